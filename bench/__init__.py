"""Benchmarks (``make bench`` → ``python -m bench.run``): measurements beside floors, never timed tests."""
