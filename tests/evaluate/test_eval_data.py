"""The evaluation's synthetic datasets follow the Data Engine's format."""

from __future__ import annotations

from helpers.eval_data import synthetic_arrays, write_dataset


def test_synthetic_dataset_follows_the_data_engine_format(tmp_path):
    from strategist.data.dataset_format import ARRAY_SPECS, load_arrays

    arrays, manifest = load_arrays(
        write_dataset(synthetic_arrays(n_races=1, n_drivers=1, n_laps=8), tmp_path)
    )
    assert set(arrays) == set(ARRAY_SPECS)
    for name, (dtype, shape) in ARRAY_SPECS.items():
        assert arrays[name].shape[1:] == shape, name
        assert (arrays[name].dtype.kind == "U") if dtype == "str" else (arrays[name].dtype == dtype), name
    assert manifest["n_samples"] == len(arrays["pace_ref"])
