"""Benchmarks other than TOFU (each a subpackage): today MUSE (`benchmarks/muse`)."""
