"""Benchmarks that print figures (`make bench`, `make bench-data`); not part of the test suite."""
