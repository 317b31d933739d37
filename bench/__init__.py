"""Benchmarks: each script prints its figures; results go to docs/BENCHMARKS.md."""
