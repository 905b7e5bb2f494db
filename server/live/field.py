"""The field of one race session: every car's laps so far and what the Data Engine makes of them.

No I/O and no model here: the service (server.live.service) stores laps and predicts; this module
answers "is this lap acceptable", "who was around the car at the line" and "what is the /predict
request for car C after lap L", with the Data Engine's own code:

- the stack: strategist.data.stack.choose_stack_laps over the car's LapInfo (slot rules);
- gaps and pace deltas: strategist.data.fastf1_reader.compute_gaps over the field's lap ends (the
  reader's code for a race folder), neighbours encoded by strategist.data.tactical's rules;
- the timing context: each lap's TimingRecord (the request's per-lap `timing`), which the pipeline
  encodes with strategist.data.context.context_vector; stint_lap is counted as the reader counts it
  (strategist.data.context.driver_lap_timings: laps since the stint's first lap).

Gaps at the moment a lap comes in: the car behind on the road has not crossed the line yet, so it is
unknown (None) until it does. When it crosses within NO_CAR_GAP_S, the earlier car's neighbours
change; `add` reports which (car, lap) keys changed, and the service predicts the car again while
that lap is still its latest (a revision). Once the field has passed, the gaps equal the reader's
for the same race.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import ValidationError

from server.live.schemas import LivePost, SessionInfo
from server.preprocess import lap_input
from server.schemas import CarGap, PredictRequest, TimingRecord
from strategist import contract
from strategist.data.align import prepare_aligned_lap
from strategist.data.engine import AlignedLap, align_raw_lap
from strategist.data.fastf1_reader import RED_CODES, SC_CODES, VSC_CODES, compute_gaps
from strategist.data.stack import LapInfo, choose_stack_laps
from strategist.errors import DataError

NEUTRALISED_STATUS = SC_CODES | VSC_CODES | RED_CODES  # the reader's is_neutralised digits
GAP_WINDOW_S = contract.NO_CAR_GAP_S  # a lap end can only be the neighbour of lap ends this close


class LapRejected(ValueError):
    """A lap the session does not take; the message names the car and lap. `conflict`: it contradicts
    what the session already holds (HTTP 409), otherwise the lap itself is bad (422)."""

    def __init__(self, car: str, lap: int, message: str, *, conflict: bool = False) -> None:
        super().__init__(f"car {car}, lap {lap}: {message}")
        self.car, self.lap, self.conflict = car, lap, conflict


@dataclass(frozen=True)
class Neighbours:
    """Who was ahead and behind at the line at the end of a lap (None: nobody within NO_CAR_GAP_S)."""

    ahead: str | None
    ahead_gap: CarGap | None
    behind: str | None
    behind_gap: CarGap | None

    def key(self) -> tuple[object, ...]:
        """What the model sees of them: equal keys give equal tactical inputs."""
        return tuple(
            None if g is None else (g.gap_s, g.pace_delta_s) for g in (self.ahead_gap, self.behind_gap)
        )


NO_NEIGHBOURS = Neighbours(None, None, None, None)


def _car_gap(gap: float, pace_delta: float) -> CarGap | None:
    if not np.isfinite(gap):
        return None
    # An unknown lap time on either side gives no pace delta: the tactical encoding's "unknown" (0 s).
    delta = pace_delta if np.isfinite(pace_delta) else contract.NO_CAR_PACE_DELTA_S
    limit = contract.MAX_ABS_PACE_DELTA_S  # what the model sees; the request schema allows more
    return CarGap(gap_s=float(gap), pace_delta_s=float(np.clip(delta, -limit, limit)))


class RaceField:
    """Laps of every car of one session, in arrival order per car (lap numbers increase)."""

    def __init__(self, info: SessionInfo) -> None:
        self.info = info
        self.laps: dict[str, dict[int, LivePost]] = {}
        self.timing: dict[str, dict[int, TimingRecord]] = {}
        self._stint_start: dict[str, dict[int, int]] = {}
        self.neighbours: dict[tuple[str, int], Neighbours] = {}

    # --- what is in ---
    def latest(self, car: str) -> int | None:
        laps = self.laps.get(car)
        return max(laps) if laps else None

    def lap(self, car: str, lap: int) -> LivePost | None:
        return self.laps.get(car, {}).get(lap)

    @property
    def n_laps(self) -> int:
        return sum(len(laps) for laps in self.laps.values())

    # --- checks, before anything is stored ---
    def check(self, post: LivePost) -> TimingRecord:
        """The lap's TimingRecord if the session can take it; LapRejected naming car and lap if not.

        Checked: the lap is within the race and after the car's latest lap (a car's laps come in
        order), its lap end is after the previous one's, the stint does not go back, the timing row
        passes the request schema's rules and the telemetry aligns with the Data Engine.
        """
        car, number = post.car, post.lap_number
        if number > self.info.race_laps:
            raise LapRejected(car, number, f"the race has {self.info.race_laps} laps")
        latest = self.latest(car)
        if latest is not None:
            previous = self.laps[car][latest]
            if number < latest:
                raise LapRejected(
                    car, number, f"arrives after lap {latest}: a car's laps come in order", conflict=True
                )
            if post.timing.lap_end_s <= previous.timing.lap_end_s:
                raise LapRejected(
                    car,
                    number,
                    f"timing.lap_end_s {post.timing.lap_end_s:g} is not after lap {latest}'s "
                    f"({previous.timing.lap_end_s:g} s)",
                )
            if post.timing.stint < previous.timing.stint:
                raise LapRejected(
                    car,
                    number,
                    f"timing.stint {post.timing.stint} is before lap {latest}'s ({previous.timing.stint})",
                )
        record = self._timing_record(post)
        if post.telemetry is not None:
            lap = lap_input(post.telemetry, f"car {car}, lap {number}")
            try:
                if isinstance(lap, AlignedLap):
                    prepare_aligned_lap(lap.channels, where=lap.where)
                else:
                    align_raw_lap(lap)
            except DataError as exc:
                raise LapRejected(car, number, f"telemetry: {exc}") from exc
        return record

    def _timing_record(self, post: LivePost) -> TimingRecord:
        starts = self._stint_start.get(post.car, {})
        stint_start = starts.get(post.timing.stint, post.lap_number)
        row = post.timing
        try:
            return TimingRecord(
                lap_number=post.lap_number,
                lap_time_s=row.lap_time_s,
                tyre_life=row.tyre_life,
                stint=row.stint,
                stint_lap=post.lap_number - stint_start + 1,
                compound=row.compound,
                track_status=row.track_status,
                pit_in=row.pit_in,
                pit_out=row.pit_out,
            )
        except ValidationError as exc:
            reasons = "; ".join(
                f"timing.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            raise LapRejected(post.car, post.lap_number, reasons) from None

    # --- adding ---
    def add(self, post: LivePost, *, update_gaps: bool = True) -> set[tuple[str, int]]:
        """Take a checked lap; returns the (car, lap) keys whose neighbours changed (this lap's too)."""
        record = self._timing_record(post)
        self._stint_start.setdefault(post.car, {}).setdefault(post.timing.stint, post.lap_number)
        self.laps.setdefault(post.car, {})[post.lap_number] = post
        self.timing.setdefault(post.car, {})[post.lap_number] = record
        return self.update_gaps(post.timing.lap_end_s) if update_gaps else set()

    def update_gaps(self, around_s: float | None = None) -> set[tuple[str, int]]:
        """Recompute the neighbours of the lap ends within GAP_WINDOW_S of `around_s` (None: all).

        compute_gaps runs on the lap ends within 2 x GAP_WINDOW_S: every neighbour of a lap end in
        the inner window lies in the outer one, so the inner results equal a run over the whole field.
        """
        rows = [
            (car, number, post.timing.lap_end_s, post.timing.lap_time_s, post.timing.position)
            for car, laps in self.laps.items()
            for number, post in laps.items()
            if around_s is None or abs(post.timing.lap_end_s - around_s) <= 2 * GAP_WINDOW_S
        ]
        frame = pd.DataFrame(
            {
                "Driver": [r[0] for r in rows],
                "LapNumber": [r[1] for r in rows],
                "Time": np.array([r[2] for r in rows], dtype=np.float64),
                "LapTime": np.array([np.nan if r[3] is None else r[3] for r in rows], dtype=np.float64),
                "Position": np.array([np.nan if r[4] is None else r[4] for r in rows], dtype=np.float64),
            }
        )
        ends = {(r[0], r[1]): r[2] for r in rows}
        changed: set[tuple[str, int]] = set()
        for g in compute_gaps(frame).itertuples(index=False):
            key = (str(g.Driver), int(g.LapNumber))
            if around_s is not None and abs(ends[key] - around_s) > GAP_WINDOW_S:
                continue
            new = Neighbours(
                ahead=str(g.AheadDriver) or None,
                ahead_gap=_car_gap(g.GapAhead, g.PaceDeltaAhead),
                behind=str(g.BehindDriver) or None,
                behind_gap=_car_gap(g.GapBehind, g.PaceDeltaBehind),
            )
            if self.neighbours.get(key) != new:
                self.neighbours[key] = new
                changed.add(key)
        return changed

    # --- requests ---
    def lap_infos(self, car: str) -> list[LapInfo]:
        return [
            LapInfo(
                number=number,
                stint=post.timing.stint,
                is_pit_in=post.timing.pit_in,
                is_pit_out=post.timing.pit_out,
                is_neutralised=any(c in NEUTRALISED_STATUS for c in post.timing.track_status),
                has_telemetry=post.telemetry is not None,
            )
            for number, post in sorted(self.laps.get(car, {}).items())
        ]

    def why_no_request(self, car: str, lap: int) -> str | None:
        """Why no next-lap prediction can be made after `lap` (None: it can)."""
        post = self.lap(car, lap)
        if post is None:
            return f"lap {lap} is not in"
        if lap >= self.info.race_laps:
            return "the last lap is done"
        if post.telemetry is None:
            return f"lap {lap} has no car data"
        if post.timing.lap_time_s is None:
            return f"lap {lap} has no lap time"
        return None

    def request(self, car: str, lap: int) -> PredictRequest:
        """The /predict request for `car` after `lap` (why_no_request must be None)."""
        reason = self.why_no_request(car, lap)
        if reason is not None:
            raise LapRejected(car, lap, f"no prediction possible: {reason}")
        choice = choose_stack_laps(lap, self.lap_infos(car), driver=car)
        laps = []
        for number in choice.laps:
            telemetry = self.laps[car][number].telemetry
            assert telemetry is not None  # the slot rules only pick laps with telemetry
            laps.append(telemetry.model_copy(update={"timing": self.timing[car][number]}))
        around = self.neighbours.get((car, lap), NO_NEIGHBOURS)
        lap_time = self.laps[car][lap].timing.lap_time_s
        assert lap_time is not None
        return PredictRequest(
            car=car,
            laps=laps,
            lap_number=lap,
            lap_time_s=lap_time,
            fuel=self.info.fuel,
            race_laps=self.info.race_laps,
            ahead=around.ahead_gap,
            behind=around.behind_gap,
        )
