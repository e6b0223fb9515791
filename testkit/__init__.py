"""Test harness shared by the tests of every package and the benchmarks: real components started here."""
