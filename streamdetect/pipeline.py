"""source -> faces (detect, track, crop) -> windows -> model step -> scoring -> messages.

Threads: one decode thread per source (sources/pyav.py) and one processing thread here, which owns the engine
and the face detector. Each round it takes at most one frame from every source that has one, so one busy stream
cannot starve the others, and runs ONE encoder call for the usable faces of all streams and ONE step call for
all their recurrent states. Messages leave through `publish` (thread-safe; the WebSocket bus in the service).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

import cv2
import numpy as np

from streamdetect import messages as msg
from streamdetect.annotate import draw_faces
from streamdetect.config import ServiceConfig
from streamdetect.errors import StreamError
from streamdetect.faces.crop import align_crop, landmarks_in_crop
from streamdetect.faces.detector import FaceDetector
from streamdetect.faces.quality import QualityThresholds, quality_flags
from streamdetect.faces.stage import FaceStage
from streamdetect.faces.tracker import FaceTracker
from streamdetect.faces.types import Track
from streamdetect.scoring import TrackScorer, Verdict
from streamdetect.sources import DropPolicy, FrameSource, SourceState, StatusEvent, VideoSource, parse_source
from streamdetect.sources.base import END
from streamdetect.windows import TrackWindow, step_tracks

if TYPE_CHECKING:  # streamdetect.engines imports torch: only the type is needed here
    from streamdetect.engines.base import Engine

log = logging.getLogger(__name__)


@dataclass
class FaceState:
    """Everything the service keeps for one tracked face; dropped when the track ends."""

    window: TrackWindow
    scorer: TrackScorer


@dataclass
class FaceJob:
    """One face in one frame, on its way through the batched model calls."""

    track: Track
    state: FaceState
    crop: np.ndarray
    flags: tuple[str, ...]
    expression: np.ndarray | None = None  # landmark features, for models trained with expression cues
    p_fake: float | None = None
    change: Verdict | None = None
    previous: Verdict = Verdict.UNKNOWN


class RateMeter:
    """Events per second over a sliding window of recent timestamps."""

    def __init__(self, horizon_s: float = 3.0):
        self.times: deque = deque()
        self.horizon = horizon_s

    def tick(self, now: float, n: int = 1) -> None:
        self.times.extend([now] * n)

    def rate(self, now: float) -> float:
        while self.times and self.times[0] < now - self.horizon:
            self.times.popleft()
        return len(self.times) / self.horizon


@dataclass
class StreamWorker:
    """Per-stream processing state; touched only by the processing thread (except `state_changed`)."""

    source: FrameSource
    tracker: FaceTracker
    phase: int = 0  # the stream's index: detector runs of different streams are staggered by it
    faces: dict[int, FaceState] = field(default_factory=dict)
    frames: int = 0
    input_meter: RateMeter = field(default_factory=RateMeter)
    processed_meter: RateMeter = field(default_factory=RateMeter)
    latencies: deque = field(default_factory=lambda: deque(maxlen=300))
    last_decoded: int = 0
    last_scores_at: float = 0.0
    last_status_at: float = 0.0
    last_preview_at: float = 0.0
    state_changed: bool = True
    reset_pending: bool = False  # set by the decode thread on reconnect; handled by the processing thread
    finished: bool = False

    @property
    def name(self) -> str:
        return self.source.name


class Pipeline:
    def __init__(self, config: ServiceConfig, engine: Engine, detector: FaceDetector,
                 publish: Callable[[msg.Message], None], on_frame: Callable | None = None,
                 sources: Iterable[FrameSource] = ()):
        """Streams: one VideoSource per `config.sources` entry, then `sources` (FrameSources the caller feeds,
        e.g. sources.push.PushSource with WebRTC frames); every one is attached to this pipeline the same way."""
        self.cfg, self.engine, self.detector, self.publish = config, engine, detector, publish
        self.on_frame = on_frame  # (frame, [FaceScore]) after each processed frame: annotation, previews
        self.quality = QualityThresholds(min_face_px=config.faces.min_face_px)
        self.face_stage = FaceStage(detector, config.faces)  # which detector passes run on each frame
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.workers: list[StreamWorker] = []
        for i, source in enumerate([*(_video_source(i, sc) for i, sc in enumerate(config.sources)), *sources]):
            source.attach(self._ready, self._on_status)
            self.workers.append(StreamWorker(source, FaceTracker(max_missed=config.faces.max_missed), phase=i))
        names = [w.name for w in self.workers]
        if len(set(names)) != len(names):
            raise ValueError(f"two sources have the same name {names}; give each a distinct name")
        self._thread = threading.Thread(target=self._run, name="processing", daemon=True)
        self.error: BaseException | None = None
        self.mesh = self.expression = None
        if engine.card.config.expression_size:
            from streamdetect.faces.expression import EXPRESSION_SIZE, ExpressionTracker
            from streamdetect.faces.landmarks import FaceMesh

            if engine.card.config.expression_size != EXPRESSION_SIZE:
                raise ValueError(f"the model reads {engine.card.config.expression_size} expression features but "
                                 f"this StreamDetect computes {EXPRESSION_SIZE}; use a matching version")
            self.mesh, self.expression = FaceMesh(), ExpressionTracker()

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> Pipeline:
        for w in self.workers:
            w.source.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for w in self.workers:
            w.source.stop()
        self._thread.join(10)

    @property
    def running(self) -> bool:
        """True while the processing thread runs (it ends when every finite source has ended, or on a fatal error)."""
        return self._thread.is_alive() or (self.workers and all(w.finished for w in self.workers))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every source has finished (files); True if they did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _on_status(self, event: StatusEvent) -> None:  # decode threads
        for w in self.workers:
            if w.name == event.stream:
                w.state_changed = True
                if event.state is SourceState.RECONNECTING:
                    w.reset_pending = True  # after an outage the faces may be other people: start afresh
                if event.state in (SourceState.RECONNECTING, SourceState.OFFLINE) and event.detail:
                    log.warning("%s: %s: %s", event.stream, event.state.value, event.detail)
        self._ready.set()

    # -- processing thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._ready.wait(0.05)
                self._ready.clear()
                batch = []
                for w in self.workers:
                    if w.reset_pending:
                        self._reset(w)
                    item = None if w.finished else w.source.read()
                    if item is END:
                        self._finish(w)
                    elif item is not None:
                        batch.append((w, item))
                if batch:
                    self._process(batch)
                    self._ready.set()  # more frames may be buffered: do not sleep before looking again
                self._emit_status()
                if self.workers and all(w.finished for w in self.workers):
                    return
        except BaseException as exc:  # surfaced to the caller (scan) instead of dying silently
            self.error = exc
            log.exception("processing thread failed")

    def _process(self, batch) -> None:
        jobs_per_frame = []
        for w, frame in batch:
            try:
                jobs_per_frame.append(self._faces(w, frame))
            except Exception as exc:  # one stream's bad frame must not stop the others
                log.exception("%s: frame %d failed", w.name, frame.index)
                self.publish(msg.Error(f"{w.name}: frame {frame.index} could not be processed: {exc}"))
                jobs_per_frame.append([])
        usable = [j for jobs in jobs_per_frame for j in jobs if not j.flags]
        if usable:
            try:
                features = self.engine.encode(np.stack([j.crop for j in usable]))
                if self.expression is not None:  # the model reads expression cues beside the CNN features
                    features = np.concatenate([features, np.stack([j.expression for j in usable])], axis=1)
                p_fake = step_tracks(self.engine, [j.state.window for j in usable], features)
            except Exception as exc:  # a failed model call loses this round's scores, not the service
                log.exception("model call failed")
                self.publish(msg.Error(f"model call failed ({self.engine.name}): {exc}"))
                p_fake = []
            for job, p in zip(usable, p_fake):
                job.p_fake = p
                job.previous = job.state.scorer.verdict
                job.change = job.state.scorer.update(p, job.state.window.scores)
        now = time.monotonic()
        for (w, frame), jobs in zip(batch, jobs_per_frame):
            try:
                self._emit_frame(w, frame, jobs, now)
            except Exception as exc:
                log.exception("%s: frame %d could not be published", w.name, frame.index)
                self.publish(msg.Error(f"{w.name}: frame {frame.index} could not be published: {exc}"))

    def _faces(self, w: StreamWorker, frame) -> list[FaceJob]:
        # Streams are staggered by their index: with 4 streams the detector runs on different rounds.
        update = self.face_stage.step(frame.rgb, w.tracker, w.frames, phase=w.phase)
        w.frames += 1
        for track_id in update.ended:
            self._end_track(w, track_id)
        size = self.engine.card.config.input_size
        jobs = []
        for track in update.active:
            state = w.faces.get(track.track_id)
            if state is None:
                state = w.faces[track.track_id] = FaceState(
                    TrackWindow(self.cfg.window, self.engine.card.config.hidden_size),
                    TrackScorer(self.cfg.scoring, self.engine.card.threshold))
            crop = align_crop(frame.rgb, track.detection, size, style=self.engine.card.config.crop)
            flags = quality_flags(crop, track.detection, self.quality)
            if track.missed > 0:  # the detector lost it: the box is a guess, the crop may be background
                flags += ("lost",)
            jobs.append(FaceJob(track, state, crop, flags))
        usable = [j for j in jobs if not j.flags]  # only frames the model scores move the expression state
        if self.mesh is not None and usable:
            self._add_expression(w, frame.rgb, usable)
        return jobs

    def _add_expression(self, w: StreamWorker, rgb: np.ndarray, jobs: list[FaceJob]) -> None:
        """Face-mesh landmarks for every face of the frame in one call, in crop coordinates as in training."""
        dets = [j.track.detection for j in jobs]
        points, presence = self.mesh.landmarks_with_presence(rgb, dets)
        for job, det, pts, present in zip(jobs, dets, points, presence):
            unit = landmarks_in_crop(pts, det, style=self.engine.card.config.crop) if present >= 0.5 else None
            job.expression = self.expression.update((w.name, job.track.track_id), unit)

    def _emit_frame(self, w: StreamWorker, frame, jobs: list[FaceJob], now: float) -> None:
        w.processed_meter.tick(now)
        latency_ms = (now - frame.captured_at) * 1e3
        w.latencies.append(latency_ms)
        faces = [msg.FaceScore(j.track.track_id, j.track.box.as_list(), _r(j.p_fake), _r(j.state.scorer.confidence),
                               j.state.scorer.verdict.value, j.state.scorer.usable, list(j.flags)) for j in jobs]
        for j in jobs:
            if j.change is not None and not (j.previous is Verdict.UNKNOWN and j.change is Verdict.CLEAR):
                self.publish(msg.Alert(w.name, j.track.track_id, j.change.value, j.previous.value,
                                       _r(j.state.scorer.confidence), j.track.box.as_list(), frame.pts,
                                       _jpeg(j.crop) if self.cfg.server.thumbnails else None))
        interval = 1.0 / self.cfg.server.scores_hz if self.cfg.server.scores_hz > 0 else 0.0
        if now - w.last_scores_at >= interval:
            w.last_scores_at = now
            self.publish(msg.Scores(w.name, frame.index, frame.pts, round(latency_ms, 1), faces))
        sc = self.cfg.server
        if sc.preview_hz > 0 and now - w.last_preview_at >= 1.0 / sc.preview_hz:
            w.last_preview_at = now
            self.publish(_preview(w.name, frame, faces, sc.preview_width))
        if self.on_frame is not None:
            self.on_frame(frame, faces)

    def _end_track(self, w: StreamWorker, track_id: int) -> None:
        state = w.faces.pop(track_id, None)  # frees the track's recurrent state and window
        if self.expression is not None:
            self.expression.forget((w.name, track_id))
        if state is not None:
            self.publish(msg.TrackEnd(w.name, track_id, state.scorer.usable, _r(state.scorer.confidence),
                                      state.scorer.verdict.value))

    def _finish(self, w: StreamWorker) -> None:
        w.finished = True
        self._reset(w)

    def _reset(self, w: StreamWorker) -> None:
        """End every track of a stream (reconnect or end): no id, memory or verdict carries over an outage."""
        w.reset_pending = False
        for track_id in w.tracker.reset():
            self._end_track(w, track_id)
        for track_id in list(w.faces):  # tracks not yet confirmed by the tracker
            self._end_track(w, track_id)
        w.frames = 0  # the next frame runs the detector
        w.state_changed = True

    def _emit_status(self) -> None:
        now = time.monotonic()
        for w in self.workers:
            decoded = w.source.decoded
            if decoded > w.last_decoded:
                w.input_meter.tick(now, decoded - w.last_decoded)
                w.last_decoded = decoded
            if not w.state_changed and now - w.last_status_at < self.cfg.server.status_interval_s:
                continue
            w.state_changed, w.last_status_at = False, now
            self.publish(self.status(w, now))

    def status(self, w: StreamWorker, now: float | None = None) -> msg.Status:
        now = time.monotonic() if now is None else now
        lat = np.array(w.latencies) if w.latencies else None
        return msg.Status(
            w.name, w.source.state.value, round(w.input_meter.rate(now), 1), round(w.processed_meter.rate(now), 1),
            None if lat is None else {"p50": round(float(np.percentile(lat, 50)), 1), "p95": round(float(np.percentile(lat, 95)), 1)},
            w.source.dropped, w.source.corrupt_packets, len(w.faces), w.source.last_error)


def _video_source(i: int, sc) -> VideoSource:
    """The VideoSource of one configured source (config.SourceConfig)."""
    options = dict(buffer_size=sc.buffer, realtime=sc.realtime, loop=sc.loop,
                   policy=DropPolicy(sc.policy) if sc.policy else None)
    try:
        return VideoSource(parse_source(sc.url, sc.name, sc.transport), **options)
    except StreamError as exc:  # one bad source must not keep the others from running
        return VideoSource.failed(sc.name or f"source{i + 1}", sc.url, str(exc), **options)


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _jpeg(rgb: np.ndarray, quality: int = 80) -> str:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return base64.b64encode(data.tobytes()).decode() if ok else None


def _preview(stream: str, frame, faces, width: int) -> msg.Preview:
    """A small annotated JPEG of the frame for dashboards (boxes drawn here: one drawing code for all clients)."""
    h, w = frame.rgb.shape[:2]
    scale = min(1.0, width / w)
    small = cv2.resize(frame.rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    draw_faces(small, faces, scale)
    return msg.Preview(stream, frame.index, small.shape[1], small.shape[0], _jpeg(small, 70))
