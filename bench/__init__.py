"""Benchmarks of the service (run as modules: `python -m bench.ingest`)."""
