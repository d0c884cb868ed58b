"""Benchmarks of tagdns, run with scripts/bench (see docs/performance.md)."""
