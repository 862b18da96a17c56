"""The same small apps written for the peer frameworks the benchmarks compare with."""
