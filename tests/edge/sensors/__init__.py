"""Tests of the sensor drivers, each against a fake at the OS boundary, and of their simulated twins."""
