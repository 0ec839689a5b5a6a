"""Baselines: ridge encoding models (himalaya) and classical source imaging (MNE-Python)."""
