"""Benchmarks and reproductions of published results (not part of ``make test``)."""
