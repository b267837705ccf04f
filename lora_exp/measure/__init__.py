"""Measurements shared by training runs and benchmarks: parameter counts (and, later, latency)."""
