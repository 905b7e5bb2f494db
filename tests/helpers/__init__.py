"""Test-only data makers: synthetic race folders, datasets for training and for evaluation.

Importable as `helpers` (pytest puts tests/ on sys.path through tests/conftest.py). They write
through strategist.data.dataset_format, the same writer the Data Engine uses.
"""
