"""The event store: one row per face track that reached a verdict, its verdict changes, thumbnail and clip state.

SQLite (WAL mode: readers never block the writer, and a process killed mid-write leaves a database that opens)
by default; the same schema in PostgreSQL when `events.database` is a postgresql:// URL. One writer thread
(events/recorder.py) writes; the HTTP API reads from the event loop's worker threads. Every call takes the lock,
so one connection serves both.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
VERDICT_RANK = {"unknown": 0, "clear": 1, "suspicious": 2, "alert": 3}
CLIP_STATES = ("none", "pending", "complete", "incomplete", "failed")

# {id}, {blob}, {real} differ between the two databases; everything else is shared SQL.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id {id},
    stream TEXT NOT NULL,
    track INTEGER NOT NULL,
    started {real} NOT NULL,
    ended {real},
    verdict TEXT NOT NULL,
    final_verdict TEXT,
    peak_confidence {real},
    final_confidence {real},
    frames INTEGER NOT NULL DEFAULT 0,
    box TEXT,
    timeline TEXT NOT NULL DEFAULT '[]',
    thumbnail {blob},
    clip_state TEXT NOT NULL DEFAULT 'none',
    clip_path TEXT,
    clip_bytes INTEGER NOT NULL DEFAULT 0,
    clip_start {real},
    clip_end {real},
    error TEXT,
    updated {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS events_started ON events (started);
CREATE INDEX IF NOT EXISTS events_stream_started ON events (stream, started);
CREATE TABLE IF NOT EXISTS changes (
    id {id},
    event_id INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    ts {real} NOT NULL,
    verdict TEXT NOT NULL,
    previous TEXT NOT NULL,
    confidence {real},
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_event ON changes (event_id);
CREATE INDEX IF NOT EXISTS changes_ts ON changes (ts);
"""

_LIST_COLUMNS = ("id, stream, track, started, ended, verdict, final_verdict, peak_confidence, final_confidence, frames, "
                 "box, clip_state, clip_bytes, clip_start, clip_end, error, thumbnail IS NOT NULL AS has_thumbnail")


@dataclass(frozen=True)
class EventFilter:
    stream: str | None = None
    verdict: str | None = None  # the highest verdict the track reached
    since: float | None = None  # started at or after (unix seconds)
    until: float | None = None  # started before
    min_confidence: float | None = None  # peak confidence at least
    limit: int = 50
    offset: int = 0

    def __post_init__(self):
        if self.verdict is not None and self.verdict not in VERDICT_RANK:
            raise ValueError(f"verdict must be one of {sorted(VERDICT_RANK)}, got {self.verdict!r}")
        if not 1 <= self.limit <= 500 or self.offset < 0:
            raise ValueError(f"limit must be 1..500 and offset >= 0, got limit={self.limit} offset={self.offset}")


class EventStore:
    """SQL over one connection. `open_store(dir, url)` picks SQLite or PostgreSQL."""

    def __init__(self, connection, dialect: dict[str, str], placeholder: str = "?"):
        self.db, self.placeholder = connection, placeholder
        self.lock = threading.RLock()
        with self.lock:
            self._executescript(_SCHEMA.format(**dialect))

    # -- helpers ----------------------------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def _executescript(self, script: str) -> None:
        for statement in filter(str.strip, script.split(";")):
            self.db.execute(statement)
        self.db.commit()

    def _rows(self, sql: str, args=()) -> list[dict]:
        with self.lock:
            cur = self.db.execute(self._sql(sql), args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def _write(self, sql: str, args=()) -> Any:
        with self.lock:
            cur = self.db.execute(self._sql(sql), args)
            self.db.commit()
            return cur

    def close(self) -> None:
        with self.lock:
            self.db.close()

    # -- writes (the recorder's thread) -----------------------------------------------------------------
    def open_event(self, stream: str, track: int, started: float, verdict: str, confidence: float | None,
                   box: list[float] | None, thumbnail: bytes | None, clip_state: str = "none") -> int:
        sql = ("INSERT INTO events (stream, track, started, verdict, peak_confidence, final_confidence, box, thumbnail, "
               "clip_state, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        args = (stream, track, started, verdict, confidence, confidence, json.dumps(box), thumbnail, clip_state, time.time())
        with self.lock:
            if self.placeholder == "?":
                return self._write(sql, args).lastrowid
            cur = self.db.execute(self._sql(sql + " RETURNING id"), args)
            self.db.commit()
            return cur.fetchone()[0]

    def add_change(self, event_id: int, message: dict, text: str) -> None:
        """A verdict change (the Alert message as sent): kept for the event's history and for replay."""
        with self.lock:
            self.db.execute(self._sql("INSERT INTO changes (event_id, ts, verdict, previous, confidence, message) "
                                      "VALUES (?, ?, ?, ?, ?, ?)"),
                            (event_id, message["ts"], message["verdict"], message["previous"], message["confidence"], text))
            rank = VERDICT_RANK[message["verdict"]]
            self.db.execute(self._sql(
                "UPDATE events SET verdict = CASE WHEN ? > (CASE verdict WHEN 'alert' THEN 3 WHEN 'suspicious' THEN 2 "
                "WHEN 'clear' THEN 1 ELSE 0 END) THEN ? ELSE verdict END, box = ?, updated = ? WHERE id = ?"),
                (rank, message["verdict"], json.dumps(message["box"]), time.time(), event_id))
            self.db.commit()

    def update_event(self, event_id: int, **fields) -> None:
        if "timeline" in fields:
            fields["timeline"] = json.dumps(fields["timeline"])
        fields["updated"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._write(f"UPDATE events SET {sets} WHERE id = ?", (*fields.values(), event_id))

    def record_track(self, stream: str, track: int, started: float, ended: float, verdict: str,
                     confidence: float | None, frames: int) -> int:
        """A track that ended without ever being suspicious: one row, no clip (what a camera saw, for audits)."""
        event_id = self.open_event(stream, track, started, verdict, confidence, None, None)
        self.update_event(event_id, ended=ended, final_verdict=verdict, frames=frames)
        return event_id

    def mark_interrupted(self) -> int:
        """At start-up: clips being written when the process died are marked incomplete, open events end."""
        cur = self._write("UPDATE events SET clip_state = 'incomplete', error = 'the service stopped while the clip "
                          "was being recorded' WHERE clip_state = 'pending'")
        # Tracks still open when the service stopped end at their last recorded moment.
        self._write("UPDATE events SET ended = updated WHERE ended IS NULL")
        return cur.rowcount

    def delete(self, event_id: int) -> dict | None:
        """Remove an event and its changes; returns the removed row (so the caller deletes its files)."""
        with self.lock:
            rows = self._rows("SELECT id, clip_path FROM events WHERE id = ?", (event_id,))
            if not rows:
                return None
            self.db.execute(self._sql("DELETE FROM changes WHERE event_id = ?"), (event_id,))
            self.db.execute(self._sql("DELETE FROM events WHERE id = ?"), (event_id,))
            self.db.commit()
            return rows[0]

    # -- reads (the HTTP API) ---------------------------------------------------------------------------
    def list(self, f: EventFilter) -> tuple[list[dict], int]:
        conditions = (("stream = ?", f.stream), ("verdict = ?", f.verdict), ("started >= ?", f.since),
                      ("started < ?", f.until), ("peak_confidence >= ?", f.min_confidence))
        where = [sql for sql, value in conditions if value is not None]
        args = [value for _, value in conditions if value is not None]
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self.lock:
            total = self._rows(f"SELECT COUNT(*) AS n FROM events{clause}", args)[0]["n"]
            rows = self._rows(f"SELECT {_LIST_COLUMNS} FROM events{clause} ORDER BY started DESC, id DESC "
                              f"LIMIT ? OFFSET ?", (*args, f.limit, f.offset))
        return [_public(r) for r in rows], total

    def get(self, event_id: int) -> dict | None:
        with self.lock:
            rows = self._rows(f"SELECT {_LIST_COLUMNS}, timeline FROM events WHERE id = ?", (event_id,))
            if not rows:
                return None
            changes = self._rows("SELECT ts, verdict, previous, confidence FROM changes WHERE event_id = ? ORDER BY ts, id",
                                 (event_id,))
        event = _public(rows[0])
        event["timeline"] = json.loads(rows[0]["timeline"])
        event["changes"] = changes
        return event

    def file(self, event_id: int, kind: str) -> bytes | str | None:
        """The thumbnail's bytes, or the clip's path (only when complete)."""
        if kind == "thumbnail":
            rows = self._rows("SELECT thumbnail FROM events WHERE id = ?", (event_id,))
            return bytes(rows[0]["thumbnail"]) if rows and rows[0]["thumbnail"] is not None else None
        rows = self._rows("SELECT clip_path FROM events WHERE id = ? AND clip_state IN ('complete', 'incomplete')",
                          (event_id,))
        return rows[0]["clip_path"] if rows and rows[0]["clip_path"] else None

    def recent_alerts(self, limit: int) -> list[tuple[dict, str]]:
        """The last `limit` verdict changes as the Alert messages that were sent, oldest first (WebSocket replay)."""
        rows = self._rows("SELECT message FROM changes ORDER BY ts DESC, id DESC LIMIT ?", (limit,))
        return [(json.loads(r["message"]), r["message"]) for r in reversed(rows)]

    # -- retention --------------------------------------------------------------------------------------
    def older_than(self, cutoff: float) -> list[dict]:
        return self._rows("SELECT id, clip_path FROM events WHERE COALESCE(ended, started) < ?",
                          (cutoff,))

    def clips_oldest_first(self) -> list[dict]:
        return self._rows("SELECT id, clip_path, clip_bytes FROM events WHERE clip_bytes > 0 ORDER BY started, id")


def _public(row: dict) -> dict:
    row = dict(row)
    row["box"] = json.loads(row["box"]) if row.get("box") else None
    row["has_thumbnail"] = bool(row["has_thumbnail"])
    return row


def open_store(folder: Path, database: str | None = None) -> EventStore:
    """SQLite in `folder` (created), or PostgreSQL at `database` (psycopg, the `postgres` extra)."""
    if database:
        try:
            import psycopg
        except ImportError as exc:
            raise RuntimeError("events.database is a PostgreSQL URL but psycopg is not installed: "
                               "pip install 'streamdetect[postgres]'") from exc
        # autocommit: reads never hold a transaction open between API calls
        return EventStore(psycopg.connect(database, autocommit=True),
                          {"id": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA", "real": "DOUBLE PRECISION"}, placeholder="%s")
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / "events.db", check_same_thread=False, isolation_level="DEFERRED")
    db.execute("PRAGMA journal_mode=WAL")  # survives a kill -9 mid-write; readers do not block the writer
    db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a power cut may lose the last commits, never corrupt
    db.execute("PRAGMA foreign_keys=ON")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return EventStore(db, {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB", "real": "REAL"})
