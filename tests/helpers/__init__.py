"""Test-only helpers (not fixtures): synthetic race folders, datasets for training and for
evaluation, tiny model configurations, gateway requests and comparisons.

Importable as `helpers` (tests/ is on sys.path under pytest; see tests/conftest.py). The data
makers write through strategist.data.dataset_format, the same writer the Data Engine uses.
"""
