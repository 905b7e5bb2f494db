"""Pre-training splits: held-out circuits and races never leak into training."""

from __future__ import annotations

import pytest

from strategist.pipeline.reproduce import ReproducePlan
from strategist.pipeline.splits import check_disjoint_races, split_circuits

CIRCUITS = ["Sakhir", "Monza", "Spa", "Suzuka", "Budapest", "Silverstone", "Austin"]


def test_held_out_circuits_are_disjoint_and_cover_all():
    split = split_circuits(CIRCUITS, n_test=2, seed=0)
    assert len(split.test) == 2
    assert set(split.train).isdisjoint(split.test)
    assert set(split.train) | set(split.test) == set(CIRCUITS)


def test_split_depends_on_seed_only():
    assert split_circuits(CIRCUITS, 2, seed=3) == split_circuits(list(reversed(CIRCUITS)), 2, seed=3)
    tests = {split_circuits(CIRCUITS, 2, seed=s).test for s in range(10)}
    assert len(tests) > 1  # different seeds hold out different circuits


def test_split_refuses_to_hold_out_everything():
    with pytest.raises(ValueError, match="at least one training circuit"):
        split_circuits(["Monza", "Spa"], n_test=2, seed=0)


def test_a_race_in_two_splits_is_refused():
    check_disjoint_races(train=["a", "b"], val=["c"], test=["d"])
    with pytest.raises(ValueError, match="'b' is in both the train and the test split"):
        check_disjoint_races(train=["a", "b"], val=["c"], test=["b"])


def test_plan_command_spells_out_non_defaults():
    assert ReproducePlan(seed=0).command() == "strategist reproduce --seed 0"
    assert ReproducePlan(seed=2, n_train_races=5).command() == "strategist reproduce --seed 2 --train-races 5"
