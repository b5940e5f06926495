"""Test support shared by tests, benchmarks and the local stack; never shipped in a function."""
