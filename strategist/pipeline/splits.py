"""Held-out splits for pre-training: test circuits never seen in training, validation by race."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class CircuitSplit:
    train: tuple[str, ...]  # circuits of the training and validation races
    test: tuple[str, ...]  # circuits only the test races use


def split_circuits(circuits: list[str], n_test: int, seed: int) -> CircuitSplit:
    """Hold out `n_test` circuits, chosen by a seeded shuffle, for the test races.

    Validation races run on training circuits (other races, other seeds), so validation is held
    out by race and test by race and by circuit.
    """
    unique = sorted(set(circuits))
    if n_test < 1 or n_test >= len(unique):
        raise ValueError(f"n_test={n_test} must leave at least one training circuit out of {len(unique)}")
    order = list(unique)
    random.Random(seed).shuffle(order)
    return CircuitSplit(train=tuple(sorted(order[n_test:])), test=tuple(sorted(order[:n_test])))


def check_disjoint_races(**splits: list[str]) -> None:
    """Raise when any race id appears in two splits (a race is never split across train/val/test)."""
    seen: dict[str, str] = {}
    for split, races in splits.items():
        for race in races:
            if race in seen and seen[race] != split:
                raise ValueError(f"race {race!r} is in both the {seen[race]} and the {split} split")
            seen[race] = split
