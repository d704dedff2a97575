"""Benchmarks: side-by-side figures and ratios, not tests (`make bench`, `make bench-smoke`)."""
