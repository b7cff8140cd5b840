"""Benchmarks (not tests): run with `python -m bench`; results go in BENCHMARKS.md."""
