"""Race sessions: durable laps in, predictions out, the field's state and a change feed.

One LiveService per gateway. Per session, under one asyncio lock:

    post a lap -> sync from the store -> check (RaceField.check) -> store (exactly once)
               -> sync -> predict every car that needs it -> store the predictions -> notify

"Needs it": its latest lap can be predicted and there is no prediction for that lap made with the
neighbours the field now shows (none yet, or the car behind has crossed the line since). The rule
reads only the stored laps and predictions, so after a restart, a lost backend call or another
replica's writes the next post (or a repeat of the last one) catches up with no extra bookkeeping.

Predictions run through the gateway's Predictor (the /predict pipeline and backend), in process.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pydantic import BaseModel

from server.live.field import NO_NEIGHBOURS, LapRejected, Neighbours, RaceField
from server.live.metrics import LiveMetrics
from server.live.schemas import (
    CarLapPoint,
    CarRow,
    FieldState,
    HitRate,
    LapAccepted,
    LivePost,
    NextLap,
    SessionCreate,
    SessionInfo,
    StoredLap,
)
from server.live.store import SessionStore
from server.pipeline import Predictor
from server.schemas import CarGap, Prediction

log = logging.getLogger(__name__)


class SessionNotFound(LookupError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"no race session {session_id!r}: create it with POST /live/sessions")
        self.session_id = session_id


class SessionConflict(ValueError):
    """Creating an id that exists with a different circuit, race length or fuel model."""


class PredictionRecord(BaseModel):
    """One stored prediction: the car, lap L, the neighbours it was made with and the answer."""

    car: str
    lap: int
    revision: int
    ahead: str | None
    ahead_gap: CarGap | None
    behind: str | None
    behind_gap: CarGap | None
    prediction: Prediction

    def neighbours_key(self) -> tuple[object, ...]:
        return Neighbours(self.ahead, self.ahead_gap, self.behind, self.behind_gap).key()


@dataclass
class LiveSession:
    info: SessionInfo
    race: RaceField
    lap_cursor: int = 0  # last lap seq read from the store
    prediction_cursor: int = 0
    predictions: dict[tuple[str, int], PredictionRecord] = field(default_factory=dict)  # latest
    predictions_made: int = 0
    lap_seqs: list[StoredLap] = field(default_factory=list)
    version: int = 0
    car_versions: dict[str, int] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def touch(self, cars: set[str]) -> None:
        if not cars:
            return
        self.version += 1
        for car in cars:
            self.car_versions[car] = self.version
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()  # wakes every stream waiting on this version


def _info_record(info: SessionInfo) -> str:
    return info.model_dump_json()


class LiveService:
    def __init__(self, store: SessionStore, predictor: Predictor, metrics: LiveMetrics) -> None:
        self.store = store
        self.predictor = predictor
        self.metrics = metrics
        self._sessions: dict[str, LiveSession] = {}
        self._loading = asyncio.Lock()

    async def _store(self, method: str, *args: object) -> object:
        # The store's calls block (file or socket): off the event loop, as the predict path keeps it free.
        return await asyncio.to_thread(getattr(self.store, method), *args)

    # --- sessions ---
    async def create(self, body: SessionCreate) -> SessionInfo:
        session_id = body.session_id or f"{_slug(body.circuit)}-{secrets.token_hex(3)}"
        info = SessionInfo(
            session_id=session_id, circuit=body.circuit, race_laps=body.race_laps, fuel=body.fuel
        )
        stored = str(await self._store("create_session", session_id, _info_record(info)))
        existing = SessionInfo.model_validate_json(stored)
        if existing != info:
            raise SessionConflict(
                f"session {session_id!r} exists as {existing.model_dump()}, not {info.model_dump()}"
            )
        return existing

    async def session_ids(self) -> list[str]:
        ids = await self._store("session_ids")
        assert isinstance(ids, list)
        return [str(i) for i in ids]

    async def session(self, session_id: str) -> LiveSession:
        """The session, loaded from the store on first use and synced with it."""
        session = self._sessions.get(session_id)
        if session is None:
            async with self._loading:
                session = self._sessions.get(session_id)
                if session is None:
                    meta = await self._store("session_meta", session_id)
                    if meta is None:
                        raise SessionNotFound(session_id)
                    info = SessionInfo.model_validate_json(str(meta))
                    session = LiveSession(info=info, race=RaceField(info))
                    self._sessions[session_id] = session
        async with session.lock:
            await self._sync(session)
        return session

    async def _sync(self, session: LiveSession) -> None:
        """Read what the store holds beyond the session's cursors (laps first, then predictions)."""
        sid = session.info.session_id
        laps = await self._store("laps_since", sid, session.lap_cursor)
        assert isinstance(laps, list)
        touched: set[str] = set()
        for seq, record in laps:
            post = LivePost.model_validate_json(record)
            if session.race.lap(post.car, post.lap_number) is None:
                # A bulk load recomputes the gaps once at the end, not once per lap.
                session.race.add(post, update_gaps=len(laps) == 1)
            session.lap_seqs.append(StoredLap(seq=seq, car=post.car, lap_number=post.lap_number))
            session.lap_cursor = seq
            touched.add(post.car)
        if len(laps) > 1:
            session.race.update_gaps()
        predictions = await self._store("predictions_since", sid, session.prediction_cursor)
        assert isinstance(predictions, list)
        for seq, record in predictions:
            parsed = PredictionRecord.model_validate_json(record)
            session.predictions[(parsed.car, parsed.lap)] = parsed
            session.predictions_made += 1
            session.prediction_cursor = seq
            touched.add(parsed.car)
        session.touch(touched)

    # --- laps ---
    async def ingest(self, session_id: str, post: LivePost, request_id: str) -> LapAccepted:
        session = await self.session(session_id)
        async with session.lock:
            try:
                duplicate = await self._take(session, post)
            except LapRejected:
                self.metrics.rejected.labels(session=session_id).inc()
                raise
            predicted = await self._predict_due(session, request_id)
        return LapAccepted(
            session_id=session_id,
            car=post.car,
            lap_number=post.lap_number,
            duplicate=duplicate,
            predicted=predicted,
            row=self.car_row(session, post.car),
        )

    async def count_refused(self, session_id: str) -> None:
        """Count a lap the schema refused before it reached the session (only for a session that
        exists: an unknown id makes no metric series)."""
        try:
            await self.session(session_id)
        except SessionNotFound:
            return
        self.metrics.rejected.labels(session=session_id).inc()

    async def _take(self, session: LiveSession, post: LivePost) -> bool:
        """Store the lap unless it is in already; True for a repeat of a stored lap."""
        sid = session.info.session_id
        await self._sync(session)
        if session.race.lap(post.car, post.lap_number) is None:
            session.race.check(post)
            seq = await self._store("append_lap", sid, post.car, post.lap_number, post.model_dump_json())
            await self._sync(session)
            if seq is not None:
                self.metrics.laps.labels(session=sid).inc()
                return False
        stored = session.race.lap(post.car, post.lap_number)
        if stored != post:
            raise LapRejected(
                post.car, post.lap_number, "differs from the lap already stored for this car", conflict=True
            )
        return True

    def _due(self, session: LiveSession) -> list[str]:
        due = []
        for car in session.race.laps:
            lap = session.race.latest(car)
            assert lap is not None
            if session.race.why_no_request(car, lap) is not None:
                continue
            made = session.predictions.get((car, lap))
            now = session.race.neighbours.get((car, lap), NO_NEIGHBOURS)
            if made is None or made.neighbours_key() != now.key():
                due.append(car)
        return due

    async def _predict_due(self, session: LiveSession, request_id: str) -> list[str]:
        cars = self._due(session)
        if not cars:
            return []
        field_ = session.race
        laps = {car: field_.latest(car) for car in cars}
        requests = [field_.request(car, lap) for car, lap in laps.items() if lap is not None]
        result = await self.predictor.predict(requests, request_id)
        sid = session.info.session_id
        for car, prediction in zip(cars, result.predictions, strict=True):
            lap = laps[car]
            assert lap is not None
            around = field_.neighbours.get((car, lap), NO_NEIGHBOURS)
            previous = session.predictions.get((car, lap))
            record = PredictionRecord(
                car=car,
                lap=lap,
                revision=1 if previous is None else previous.revision + 1,
                ahead=around.ahead,
                ahead_gap=around.ahead_gap,
                behind=around.behind,
                behind_gap=around.behind_gap,
                prediction=prediction,
            )
            await self._store("append_prediction", sid, record.model_dump_json())
        self.metrics.predictions.labels(session=sid).inc(len(cars))
        await self._sync(session)
        rate = self.hit_rate(session)
        self.metrics.judged.labels(session=sid).set(rate.judged)
        if rate.share is not None:
            self.metrics.hit_rate.labels(session=sid).set(rate.share)
        return cars

    # --- state ---
    def _next_lap(self, session: LiveSession, car: str, lap: int) -> NextLap | None:
        record = session.predictions.get((car, lap))
        if record is None:
            return None
        p = record.prediction
        actual_post = session.race.lap(car, lap + 1)
        actual = None if actual_post is None else actual_post.timing.lap_time_s
        corridor = p.pace.expected_lap_time
        return NextLap(
            lap=lap,
            expected_lap_time=corridor,
            bad_lap_risk=1.0 - p.risk.get("none", 0.0),
            risk=p.risk,
            tire_health=p.tire_health,
            traffic_cost_s=p.traffic_cost_s,
            ahead=record.ahead,
            behind=record.behind,
            revision=record.revision,
            actual_s=actual,
            inside=None if actual is None else bool(corridor.p10_s <= actual <= corridor.p90_s),
        )

    def car_row(self, session: LiveSession, car: str) -> CarRow:
        field_ = session.race
        last = field_.latest(car)
        assert last is not None
        post = field_.laps[car][last]
        corridors = [
            n for lap in sorted(field_.laps[car]) if (n := self._next_lap(session, car, lap)) is not None
        ]
        next_lap = self._next_lap(session, car, last)
        return CarRow(
            car=car,
            position=post.timing.position,
            laps_done=len(field_.laps[car]),
            last_lap=last,
            last_lap_time_s=post.timing.lap_time_s,
            last_lap_end_s=post.timing.lap_end_s,
            compound=post.timing.compound,
            tyre_life=post.timing.tyre_life,
            pit_in=post.timing.pit_in,
            next_lap=next_lap,
            no_prediction=field_.why_no_request(car, last) if next_lap is None else None,
            previous=self._next_lap(session, car, last - 1),
            laps=[
                CarLapPoint(lap=n, lap_time_s=p.timing.lap_time_s)
                for n, p in sorted(field_.laps[car].items())
            ],
            corridors=corridors,
        )

    def race_order(self, session: LiveSession) -> list[str]:
        """Most laps first, then the earliest across the line: the order at the timing line."""
        field_ = session.race

        def key(car: str) -> tuple[int, float]:
            last = field_.latest(car)
            assert last is not None
            return (-last, field_.laps[car][last].timing.lap_end_s)

        return sorted(field_.laps, key=key)

    def hit_rate(self, session: LiveSession) -> HitRate:
        judged = inside = 0
        for car, lap in session.predictions:
            n = self._next_lap(session, car, lap)
            if n is not None and n.inside is not None:
                judged += 1
                inside += int(n.inside)
        return HitRate(judged=judged, inside=inside, share=inside / judged if judged else None)

    def state(self, session: LiveSession, cars: list[str] | None = None) -> FieldState:
        order = self.race_order(session)
        return FieldState(
            session=session.info,
            cars=[self.car_row(session, car) for car in order if cars is None or car in cars],
            hit_rate=self.hit_rate(session),
            laps_ingested=session.race.n_laps,
            predictions_made=session.predictions_made,
        )

    async def events(
        self, session_id: str, *, poll_s: float = 1.0, keepalive_s: float = 15.0
    ) -> AsyncIterator[str]:
        """Server-sent events: `state` (the whole field) first, then `cars` with the rows that changed
        (in race order, with the hit rate). Every poll_s the store is read again, so a stream also
        shows laps another replica took."""
        session = await self.session(session_id)
        seen = session.version  # before yielding: a change while the client reads is sent next
        yield _event("state", self.state(session))
        idle = 0.0
        while True:
            if session.version == seen:
                try:
                    await asyncio.wait_for(session.changed.wait(), timeout=poll_s)
                except asyncio.TimeoutError:
                    async with session.lock:
                        await self._sync(session)
            if session.version > seen:
                cars = [car for car, v in session.car_versions.items() if v > seen]
                seen = session.version
                idle = 0.0
                yield _event("cars", self.state(session, cars))
            else:
                idle += poll_s
                if idle >= keepalive_s:
                    idle = 0.0
                    yield ": keep-alive\n\n"


def _event(name: str, body: BaseModel) -> str:
    return f"event: {name}\ndata: {body.model_dump_json()}\n\n"


def _slug(text: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    return (slug or "race")[:40]
