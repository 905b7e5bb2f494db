"""One lap's samples as a 2-D block -> a validated LapTelemetry, with numpy instead of per-sample checks.

Shared by the two fast body decoders: the binary body (server/binary_format.py, float32 blocks) and
the JSON decoder (server/decode.py, the lists msgspec decoded). The checks are the JSON schema's own
(strategist.limits), with the schema's messages and locations, so a lap is refused the same way
whichever decoder read it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from server.schemas import LapTelemetry
from strategist import contract, limits

Loc = tuple[str | int, ...]
INDEX_KINDS = ("time_s", "distance_m", "aligned")


class BodyError(ValueError):
    """A body that cannot be decoded or fails validation; `errors` are pydantic-style
    {"loc", "msg", "type"} entries, loc relative to the body (no leading "body")."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


def fail(loc: Loc, msg: str, kind: str = "value_error") -> BodyError:
    return BodyError([{"loc": loc, "msg": msg, "type": kind}])


def _finite(row: np.ndarray, loc: Loc) -> None:
    bad = ~np.isfinite(row)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise fail((*loc, i), f"Input should be a finite number, got {row[i]:g}", "finite_number")


def lap_from_block(values: np.ndarray, kind: str, loc: Loc) -> LapTelemetry:
    """values float64 [6, n] (index row, then contract.CHANNELS) for a raw lap, [5, 100] for an aligned
    one -> the lap, built without pydantic's per-sample validation (every rule is checked here)."""
    channel_rows = values if kind == "aligned" else values[1:]
    # One pass over the block (count_nonzero: .all() without its ~1 us); the slow path names the sample.
    if np.count_nonzero(np.isfinite(values)) != values.size:
        if kind != "aligned":
            _finite(values[0], (*loc, kind))
        for name, row in zip(contract.CHANNELS, channel_rows, strict=True):
            _finite(row, (*loc, "channels", name))
    channels = dict(zip(contract.CHANNELS, channel_rows, strict=True))
    # The valid case in a few vector passes; the per-channel rules only to word what is wrong.
    if not limits.channels_within_limits(channel_rows):
        try:
            limits.check_channel_samples(channels)
        except ValueError as exc:
            raise fail((*loc, "channels"), f"Value error, {exc}") from exc
    n = values.shape[1]
    try:
        if kind == "aligned":
            limits.check_aligned_length(n)
        else:
            limits.check_raw_index(kind, values[0], n)
    except ValueError as exc:
        raise fail(loc, f"Value error, {exc}") from exc
    # The arrays are what preprocess and the Data Engine read.
    fields: dict[str, Any] = {"channels": channels, "aligned": kind == "aligned"}
    if kind != "aligned":
        fields[kind] = values[0]
    lap = LapTelemetry.model_construct(**fields)
    lap._limits_checked = True  # PredictRequest's validation need not check the index again
    return lap
