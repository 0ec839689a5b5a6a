"""Evaluation: metrics, the simulation and prediction benchmarks, and the demo report."""
