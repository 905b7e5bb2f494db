"""Durable state of race sessions: one interface, SQLite (embedded, the default) or Redis.

Each session is two append-only logs, both ordered by a sequence number that starts at 1:
- laps: one record per (car, lap number), written once: a second append of the same key is refused
  (the caller tells a repeat from a conflict by comparing records), so a lap is in the store exactly
  once however often a feed or a restarted replay sends it;
- predictions: every prediction made, revisions included.
A gateway (or several replicas sharing Redis) rebuilds a session by reading both logs from a sequence
number on (`laps_since`, `predictions_since`): a restart mid-race loses nothing that was acknowledged.

Records are JSON text written and read by server.live.service; the store does not parse them.
SQLite runs in WAL mode with synchronous=NORMAL: a committed lap survives the gateway process being
killed (it may be lost only if the operating system itself crashes before the WAL is synced).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, meta TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS laps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    car TEXT NOT NULL,
    lap INTEGER NOT NULL,
    record TEXT NOT NULL,
    UNIQUE (session, car, lap)
);
CREATE TABLE IF NOT EXISTS predictions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS predictions_by_session ON predictions (session, seq);
"""


class StoreError(RuntimeError):
    """The session store cannot be reached or answered with an error (the gateway answers 503)."""


class SessionStore(Protocol):
    """What the live service needs from a store. Sequence numbers increase within a session."""

    kind: str

    def create_session(self, session_id: str, meta: str) -> str:
        """Store the session's meta record unless the id exists; return the stored meta either way."""
        ...

    def session_meta(self, session_id: str) -> str | None: ...

    def session_ids(self) -> list[str]: ...

    def append_lap(self, session_id: str, car: str, lap: int, record: str) -> int | None:
        """The lap's sequence number, or None when (car, lap) is already stored (nothing written)."""
        ...

    def lap_record(self, session_id: str, car: str, lap: int) -> str | None: ...

    def laps_since(self, session_id: str, seq: int) -> list[tuple[int, str]]:
        """(seq, record) of the laps stored after `seq`, in order."""
        ...

    def append_prediction(self, session_id: str, record: str) -> int: ...

    def predictions_since(self, session_id: str, seq: int) -> list[tuple[int, str]]: ...

    def close(self) -> None: ...


class SQLiteStore:
    """Sessions in one SQLite file (WAL). One connection, used from worker threads under a lock."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(SQLITE_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the session store {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as exc:
                raise StoreError(f"session store {self.path}: {exc}") from exc

    def create_session(self, session_id: str, meta: str) -> str:
        self._run("INSERT OR IGNORE INTO sessions (id, meta) VALUES (?, ?)", (session_id, meta))
        stored = self.session_meta(session_id)
        assert stored is not None
        return stored

    def session_meta(self, session_id: str) -> str | None:
        rows = self._run("SELECT meta FROM sessions WHERE id = ?", (session_id,))
        return str(rows[0][0]) if rows else None

    def session_ids(self) -> list[str]:
        return [str(r[0]) for r in self._run("SELECT id FROM sessions ORDER BY id")]

    def append_lap(self, session_id: str, car: str, lap: int, record: str) -> int | None:
        try:
            self._run(
                "INSERT INTO laps (session, car, lap, record) VALUES (?, ?, ?, ?)",
                (session_id, car, lap, record),
            )
        except sqlite3.IntegrityError:
            return None
        rows = self._run(
            "SELECT seq FROM laps WHERE session = ? AND car = ? AND lap = ?", (session_id, car, lap)
        )
        return int(rows[0][0])

    def lap_record(self, session_id: str, car: str, lap: int) -> str | None:
        rows = self._run(
            "SELECT record FROM laps WHERE session = ? AND car = ? AND lap = ?", (session_id, car, lap)
        )
        return str(rows[0][0]) if rows else None

    def laps_since(self, session_id: str, seq: int) -> list[tuple[int, str]]:
        rows = self._run(
            "SELECT seq, record FROM laps WHERE session = ? AND seq > ? ORDER BY seq", (session_id, seq)
        )
        return [(int(s), str(r)) for s, r in rows]

    def append_prediction(self, session_id: str, record: str) -> int:
        with self._lock:
            try:
                cursor = self._db.execute(
                    "INSERT INTO predictions (session, record) VALUES (?, ?)", (session_id, record)
                )
            except sqlite3.Error as exc:
                raise StoreError(f"session store {self.path}: {exc}") from exc
            return int(cursor.lastrowid or 0)

    def predictions_since(self, session_id: str, seq: int) -> list[tuple[int, str]]:
        rows = self._run(
            "SELECT seq, record FROM predictions WHERE session = ? AND seq > ? ORDER BY seq",
            (session_id, seq),
        )
        return [(int(s), str(r)) for s, r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


# KEYS[1] = the session's (car, lap) -> seq hash, KEYS[2] = its laps list; ARGV = key, record.
# One script, so the check and both writes are atomic across every replica sharing the server.
_APPEND_LAP = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
local n = redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], n)
return n
"""


class RedisStore:
    """Sessions in Redis, for several gateway replicas serving one race. Keys under `prefix`:
    <prefix>sessions (hash id -> meta), <prefix><id>:laps and :predictions (lists, seq = index + 1),
    <prefix><id>:lap-index (hash "car/lap" -> seq). Durability is the Redis server's (appendonly)."""

    kind = "redis"

    def __init__(self, url: str, *, prefix: str = "strategist:live:", timeout_s: float = 2.0) -> None:
        import redis  # noqa: PLC0415 - only a Redis deployment needs the client

        self.prefix = prefix
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
        )
        self._append_lap = self._client.register_script(_APPEND_LAP)
        self._call(self._client.ping)

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._errors as exc:
            raise StoreError(f"session store (redis): {exc}") from exc

    def _key(self, session_id: str, what: str) -> str:
        return f"{self.prefix}{session_id}:{what}"

    def create_session(self, session_id: str, meta: str) -> str:
        self._call(self._client.hsetnx, f"{self.prefix}sessions", session_id, meta)
        stored = self.session_meta(session_id)
        assert stored is not None
        return stored

    def session_meta(self, session_id: str) -> str | None:
        value = self._call(self._client.hget, f"{self.prefix}sessions", session_id)
        return None if value is None else str(value)

    def session_ids(self) -> list[str]:
        return sorted(str(k) for k in self._call(self._client.hkeys, f"{self.prefix}sessions"))

    def append_lap(self, session_id: str, car: str, lap: int, record: str) -> int | None:
        keys = [self._key(session_id, "lap-index"), self._key(session_id, "laps")]
        seq = int(self._call(self._append_lap, keys, [f"{car}/{lap}", record]))
        return seq or None

    def lap_record(self, session_id: str, car: str, lap: int) -> str | None:
        seq = self._call(self._client.hget, self._key(session_id, "lap-index"), f"{car}/{lap}")
        if seq is None:
            return None
        value = self._call(self._client.lindex, self._key(session_id, "laps"), int(seq) - 1)
        return None if value is None else str(value)

    def _since(self, key: str, seq: int) -> list[tuple[int, str]]:
        values = self._call(self._client.lrange, key, seq, -1)
        return [(seq + 1 + i, str(v)) for i, v in enumerate(values)]

    def laps_since(self, session_id: str, seq: int) -> list[tuple[int, str]]:
        return self._since(self._key(session_id, "laps"), seq)

    def append_prediction(self, session_id: str, record: str) -> int:
        return int(self._call(self._client.rpush, self._key(session_id, "predictions"), record))

    def predictions_since(self, session_id: str, seq: int) -> list[tuple[int, str]]:
        return self._since(self._key(session_id, "predictions"), seq)

    def close(self) -> None:
        self._client.close()
