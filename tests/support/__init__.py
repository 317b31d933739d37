"""Helpers for tests: real services started on free loopback ports."""
