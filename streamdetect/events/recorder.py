"""Records what the service decided: events, their verdict changes, confidence timelines and evidence clips.

Wiring (service.py): the recorder is a Bus sink (it sees every message on the event loop and only queues it),
the pipeline's `on_frame` hook (it keeps recent frames for clips); the service seeds the Bus's replay of recent
alerts from the store, so they survive a restart. All database and file work happens on the
recorder's own thread, so a slow disk never stalls the loop or the model. The queue is unbounded: a message
handed to the recorder is written, never dropped.

An event is one face track that reached "suspicious" or "alert": it opens at that verdict change and closes at
the track's end. Tracks that ended with a verdict but were never suspicious are stored too (one row, no clip).
"""

from __future__ import annotations

import base64
import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from streamdetect.config import EventsConfig
from streamdetect.events.clips import ClipFrame, FrameRing, write_clip
from streamdetect.events.store import VERDICT_RANK, EventStore, open_store

log = logging.getLogger(__name__)

TIMELINE_POINTS = 2000  # per event; longer tracks keep every other point (the chart needs shape, not every frame)
FLUSH_EVERY_S = 2.0  # an open event's timeline is written at least this often


def data_dir(config: EventsConfig) -> Path:
    if config.dir:
        return Path(config.dir).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "streamdetect"


@dataclass
class OpenEvent:
    id: int
    started: float
    timeline: list = field(default_factory=list)  # [[ts, confidence], ...]
    clip_until: float | None = None  # recording until this time; None once the clip is written
    clip_frames: list[ClipFrame] = field(default_factory=list)
    flushed_at: float = 0.0
    dirty: bool = False
    peak: float = 0.0  # highest rolling confidence seen while the event was open


@dataclass
class TrackSeen:
    """What the recorder keeps for every live track, event or not."""

    first_ts: float
    recent: deque = field(default_factory=lambda: deque(maxlen=300))  # (ts, confidence) before any event


class EventRecorder:
    def __init__(self, config: EventsConfig, report_error: Callable[[str], None] = lambda message: None):
        self.cfg = config
        self.folder = data_dir(config)
        self.clips_dir = self.folder / "clips"
        self.store: EventStore = open_store(self.folder, config.database)
        interrupted = self.store.mark_interrupted()
        if interrupted:
            log.warning("%d clip(s) were cut short by the last shutdown and are marked incomplete", interrupted)
        for leftover in self.clips_dir.glob("*.part"):  # half-written clips of a killed process
            leftover.unlink(missing_ok=True)
        self.report_error = report_error  # publishes an error message to subscribers
        self.ring = FrameRing(config.clip_before_s + 2 * FLUSH_EVERY_S, config.clip_width, config.clip_fps)
        self._queue: queue.Queue = queue.Queue()
        self._open: dict[tuple[str, int], OpenEvent] = {}
        self._tracks: dict[tuple[str, int], TrackSeen] = {}
        self._last_retention = 0.0
        self._closing = False  # set once close() is writing the last clips with the frames there are
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    # -- producers (any thread) -------------------------------------------------------------------------
    def __call__(self, data: dict, text: str) -> None:
        """Bus sink: queue what the store needs; never blocks."""
        kind = data["type"]
        if kind in ("alert", "scores", "track_end"):
            self._queue.put((kind, data, text))

    def on_frame(self, stream: str, rgb, faces) -> None:
        """The processing thread's hook: keep the annotated frame for clips."""
        self.ring.add(stream, rgb, faces)

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, finish clips with the frames there are, close the database."""
        self._queue.put(("close", None, None))
        self._thread.join(timeout)
        self.store.close()

    def flush(self, timeout: float = 30.0) -> None:
        """Block until everything queued so far is written (tests, shutdown)."""
        done = threading.Event()
        self._queue.put(("flush", done, None))
        done.wait(timeout)

    # -- the recorder's thread --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                kind, data, text = self._queue.get(timeout=0.2)
            except queue.Empty:
                kind = None
            try:
                if kind == "close":
                    self._finish_all()
                    return
                if kind == "flush":
                    self._tick(force=True)
                    data.set()
                    continue
                if kind == "alert":
                    self._on_alert(data, text)
                elif kind == "scores":
                    self._on_scores(data)
                elif kind == "track_end":
                    self._on_track_end(data)
                self._tick()
            except Exception as exc:  # the store must not die with one bad write: report it and go on
                log.exception("event store: %s message could not be recorded", kind)
                self.report_error(f"event store: could not record a {kind} message: {exc}")

    def _seen(self, key, ts: float) -> TrackSeen:
        return self._tracks.setdefault(key, TrackSeen(ts))

    def _on_alert(self, data: dict, text: str) -> None:
        key = (data["stream"], data["track"])
        seen = self._seen(key, data["ts"])
        event = self._open.get(key)
        if event is None:
            if VERDICT_RANK[data["verdict"]] < VERDICT_RANK["suspicious"]:
                return  # a first verdict of "clear" is not an event (it is recorded at the track's end)
            thumbnail = base64.b64decode(data["thumbnail"]) if data.get("thumbnail") else None
            record_clip = self.cfg.clip_before_s + self.cfg.clip_after_s > 0
            event_id = self.store.open_event(data["stream"], data["track"], data["ts"], data["verdict"],
                                             data["confidence"], data["box"], thumbnail,
                                             "pending" if record_clip else "none")
            event = self._open[key] = OpenEvent(event_id, data["ts"], [list(p) for p in seen.recent],
                                                peak=data["confidence"] or 0.0)
            if record_clip:
                event.clip_frames = self.ring.since(data["stream"], data["ts"] - self.cfg.clip_before_s, time.time())
                event.clip_until = data["ts"] + self.cfg.clip_after_s
        elif data["verdict"] == "alert" and event.clip_until is not None:
            event.clip_until = max(event.clip_until, data["ts"] + self.cfg.clip_after_s)  # the clip covers the alert
        event.peak = max(event.peak, data["confidence"] or 0.0)
        self.store.add_change(event.id, data, text)

    def _on_scores(self, data: dict) -> None:
        for face in data["faces"]:
            if face["confidence"] is None:
                continue
            key = (data["stream"], face["track"])
            point = [data["ts"], face["confidence"]]
            event = self._open.get(key)
            if event is None:
                self._seen(key, data["ts"]).recent.append(point)
            else:
                event.timeline.append(point)
                event.peak = max(event.peak, face["confidence"])
                if len(event.timeline) > TIMELINE_POINTS:
                    event.timeline = event.timeline[::2]
                event.dirty = True

    def _on_track_end(self, data: dict) -> None:
        key = (data["stream"], data["track"])
        seen = self._tracks.pop(key, None)
        event = self._open.get(key)
        if event is None:
            if data["verdict"] != "unknown":  # faces seen too briefly for any verdict are not worth a row
                self.store.record_track(data["stream"], data["track"], seen.first_ts if seen else data["ts"],
                                        data["ts"], data["verdict"], data["confidence"], data["frames"])
            return
        self.store.update_event(event.id, ended=data["ts"], final_verdict=data["verdict"],
                                final_confidence=data["confidence"], frames=data["frames"], timeline=event.timeline,
                                peak_confidence=event.peak)
        event.dirty = False
        if event.clip_until is None:
            del self._open[key]
        # else: it stays until its clip's after-window has passed (the clip shows what followed)

    def _tick(self, force: bool = False) -> None:
        now = time.time()
        for key, event in list(self._open.items()):
            if event.clip_until is not None:
                last = event.clip_frames[-1].ts if event.clip_frames else event.started - self.cfg.clip_before_s
                event.clip_frames += self.ring.since(key[0], last, event.clip_until)
                if now >= event.clip_until or force and self._closing:
                    self._write_clip(key, event)
            if event.dirty and (force or now - event.flushed_at >= FLUSH_EVERY_S):
                self.store.update_event(event.id, timeline=event.timeline, peak_confidence=event.peak)
                event.dirty, event.flushed_at = False, now
            if event.clip_until is None and key not in self._tracks:
                del self._open[key]  # the track ended earlier; its clip is now written
        if now - self._last_retention >= self.cfg.retention_every_s:
            self._last_retention = now
            self.enforce_retention()

    def _finish_all(self) -> None:
        self._closing = True
        self._tick(force=True)
        for event in self._open.values():
            self.store.update_event(event.id, timeline=event.timeline)

    def _write_clip(self, key, event: OpenEvent) -> None:
        frames, event.clip_frames, until = event.clip_frames, [], event.clip_until
        event.clip_until = None
        if not frames:
            self.store.update_event(event.id, clip_state="failed", error="no frames were kept for the clip")
            return
        path = self.clips_dir / f"{event.id}.mp4"
        try:
            self.clips_dir.mkdir(parents=True, exist_ok=True)
            size = write_clip(frames, path)
        except Exception as exc:  # disk full, folder gone, encoder error: the event stays, without its clip
            log.error("event %d: clip not written: %s", event.id, exc)
            self.store.update_event(event.id, clip_state="failed", error=f"clip not written: {exc}")
            self.report_error(f"event {event.id} ({key[0]} track {key[1]}): evidence clip not written: {exc}")
            return
        state = "complete" if frames[-1].ts >= until - 1.0 or not self._closing else "incomplete"
        self.store.update_event(event.id, clip_state=state, clip_path=str(path), clip_bytes=size,
                                clip_start=frames[0].ts, clip_end=frames[-1].ts)

    # -- retention and deletion -------------------------------------------------------------------------
    def enforce_retention(self, now: float | None = None) -> int:
        """Delete events older than max_age_days, then the oldest clips while the folder is over max_disk_mb."""
        now = time.time() if now is None else now
        removed = 0
        for row in self.store.older_than(now - self.cfg.max_age_days * 86400):
            self._delete_files(self.store.delete(row["id"]))
            removed += 1
        budget = self.cfg.max_disk_mb * 1e6
        used = self.disk_bytes()
        if used > budget:
            for row in self.store.clips_oldest_first():
                if used <= budget:
                    break
                self._delete_files(self.store.delete(row["id"]))
                used -= row["clip_bytes"]
                removed += 1
        if removed:
            log.info("retention: removed %d event(s)", removed)
        return removed

    def disk_bytes(self) -> int:
        total = 0
        for path in (self.folder.glob("events.db*") if self.cfg.database is None else ()):
            total += path.stat().st_size
        if self.clips_dir.is_dir():
            total += sum(p.stat().st_size for p in self.clips_dir.iterdir() if p.is_file())
        return total

    def delete(self, event_id: int) -> bool:
        row = self.store.delete(event_id)
        self._delete_files(row)
        return row is not None

    @staticmethod
    def _delete_files(row: dict | None) -> None:
        if row and row.get("clip_path"):
            Path(row["clip_path"]).unlink(missing_ok=True)
