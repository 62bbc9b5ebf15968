"""Benchmarks: `make bench` (or `python -m bench [NAME…] [--quick]`). Each bench_*.py module has a
``main(quick: bool) -> None`` that prints its figures and the ratio against a baseline run in the same process."""
