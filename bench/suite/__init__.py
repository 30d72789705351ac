"""The modules behind bench/run.py: one per section of the benchmark (HTTP, tokens, kubectl, scale)."""
