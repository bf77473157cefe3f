"""Benchmarks: `engines` (bench: encoder/step per backend), `live` (bench-live: the whole pipeline), `hardware`."""
