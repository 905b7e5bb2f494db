"""Evaluation: metrics, baselines and the report of a held-out-by-race evaluation run."""
