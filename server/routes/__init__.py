"""HTTP routes: health/readiness/metrics and prediction."""
