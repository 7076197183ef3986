"""Benchmarks; run them all with ``bench/run`` (see bench/README.md)."""
