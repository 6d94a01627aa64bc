"""Benchmarks: scripts that print their figures (run through `vivit-tfx bench ...`)."""
