"""Benchmark and comparison scripts (never imported by the package)."""
