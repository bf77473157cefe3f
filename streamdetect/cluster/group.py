"""A stream group: a Ray actor that runs K streams, each through the ordinary Pipeline (decode, detect, track,
crop, per-face windows and verdicts), with the scorer pool as its engine and Redis as its bus.

- Messages: every message a stream's pipeline publishes is XADDed to `{p}:msgs:{stream}` (capped, MAXLEN ~).
  Frame numbers in `scores`/`preview` are the stream's own across failovers: a resumed stream continues after
  the last frame published or checkpointed, so gateways can drop duplicates by (stream, frame).
- Checkpoints: the pipeline's `on_frame` hook (processing thread) writes tracker, faces ((h, c), windows,
  verdict machines) and the frame number to `{p}:ckpt:{stream}` every `checkpoint_s`.
- Restart: the group reads its streams from `{p}:group:{gid}` when it starts, so when Ray restarts it on another
  node (max_restarts=-1) it resumes the same streams from their last checkpoints with no one telling it to.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from dataclasses import dataclass, field

from streamdetect import messages as msg
from streamdetect.cluster import NAMESPACE, checkpoint
from streamdetect.cluster.scorer import EngineProxy
from streamdetect.cluster.store import Keys, connect, maxlen, text
from streamdetect.config import ServiceConfig, SourceConfig

log = logging.getLogger(__name__)


def group_name(gid: str) -> str:
    return f"sd-group-{gid}"


@dataclass
class _Stream:
    name: str
    pipeline: object
    base: int  # added to the source's frame index: the stream's frame numbers continue across failovers
    restored: dict | None = None  # the checkpoint this run started from (seq, frame, faces view)
    seq: int = 0
    last_ckpt: float = 0.0
    last_frame: int = -1
    errors: int = 0
    started: float = field(default_factory=time.time)


class StreamGroup:
    def __init__(self, gid: str, redis_url: str, prefix: str, config: ServiceConfig, scorer_names: list[str],
                 checkpoint_s: float = 1.0):
        import ray

        from streamdetect.model.card import ModelCard

        self.gid, self.keys, self.config, self.checkpoint_s = gid, Keys(prefix), config, checkpoint_s
        self.redis = connect(redis_url)
        card = self.redis.get(self.keys.card)
        if card is None:
            raise RuntimeError(f"no model card in Redis under {self.keys.card}: the director writes it at start")
        self.card = ModelCard.from_json(text(card), "cluster")
        self.scorers = [ray.get_actor(n, namespace=NAMESPACE) for n in scorer_names]
        sc = config.server
        self.maxlen = maxlen(sc.scores_hz, sc.preview_hz, sc.status_interval_s)
        self.node = ray.get_runtime_context().get_node_id()
        self.streams: dict[str, _Stream] = {}
        self.lock = threading.Lock()
        for name in sorted(text(n) for n in self.redis.smembers(self.keys.group(gid))):
            self._start(name)

    # -- API (Ray methods) ----------------------------------------------------------------------------
    def add_stream(self, name: str) -> dict:
        self._start(name)
        return self.info()

    def remove_stream(self, name: str) -> None:
        with self.lock:
            s = self.streams.pop(name, None)
        if s is not None:
            self._stop(s)

    def info(self) -> dict:
        out = {}
        for name, s in list(self.streams.items()):
            w = s.pipeline.workers[0]
            out[name] = {"state": w.source.state.value, "faces": len(w.faces), "frame": s.last_frame,
                         "restored_from": None if s.restored is None else s.restored["seq"],
                         "publish_errors": s.errors,
                         **({"error": f"processing stopped: {s.pipeline.error}"} if s.pipeline.error else {})}
        return {"gid": self.gid, "node": self.node, "streams": out}

    def restored(self, name: str) -> dict | None:
        """The checkpoint a stream resumed from: its seq, frame and per-face state as restored (tests, status)."""
        s = self.streams.get(name)
        return None if s is None else s.restored

    def stop_all(self) -> None:
        with self.lock:
            streams, self.streams = list(self.streams.values()), {}
        for s in streams:
            self._stop(s)

    # -- streams ----------------------------------------------------------------------------------------
    def _start(self, name: str) -> None:
        from streamdetect.faces.detector import MediaPipeFaceDetector
        from streamdetect.pipeline import Pipeline

        with self.lock:
            if name in self.streams:
                return
            spec = self.redis.hget(self.keys.wanted, name)
            if spec is None:
                return  # removed meanwhile
            source = SourceConfig(**json.loads(spec))
            cfg = dataclasses.replace(self.config, sources=(source,))
            state = restored = None
            try:
                state = checkpoint.load(self.redis.get(self.keys.ckpt(name)))
            except Exception as exc:  # a bad checkpoint costs the faces' memory, not the stream
                log.warning("%s: checkpoint unreadable, starting afresh: %s", name, exc)
            base = max(self._last_published(name), state["frame"] if state else -1) + 1
            fc = cfg.faces
            detector = MediaPipeFaceDetector(fc.model, fc.min_score, fc.tiles)
            engine = EngineProxy(self.card, self.scorers, name)
            holder: dict = {}
            pipeline = Pipeline(cfg, engine, detector, lambda m: self._publish(holder["s"], m),
                                on_frame=lambda frame, faces: self._on_frame(holder["s"], frame))
            if state is not None:
                checkpoint.restore(pipeline.workers[0], state)
                restored = {"seq": state["seq"], "frame": state["frame"], "ts": state["ts"], "base": base,
                            "faces": checkpoint.face_states(state["faces"])}
                log.info("%s: resumed from checkpoint %d (frame %d, %d faces)", name, state["seq"], state["frame"],
                         len(state["faces"]))
            s = holder["s"] = _Stream(name, pipeline, base, restored, seq=state["seq"] + 1 if state else 0)
            self.streams[name] = s
            pipeline.start()

    def _stop(self, s: _Stream) -> None:
        s.pipeline.stop()
        s.pipeline.detector.close()

    def _last_published(self, name: str) -> int:
        """Highest frame number already in the stream's message log (a previous run's last scores/preview)."""
        try:
            for _, fields in self.redis.xrevrange(self.keys.msgs(name), count=64):
                f = int(fields.get(b"f", -1))
                if f >= 0:
                    return f
        except Exception:
            log.exception("%s: could not read the message log", name)
        return -1

    def _publish(self, s: _Stream, m: msg.Message) -> None:  # processing thread
        try:
            frame = -1
            if isinstance(m, (msg.Scores, msg.Preview)):
                m = dataclasses.replace(m, frame=s.base + m.frame)
                frame = m.frame
                if isinstance(m, msg.Scores):
                    s.last_frame = frame
            elif isinstance(m, msg.Error):
                m = dataclasses.replace(m, message=m.message if m.message.startswith(s.name) else f"{s.name}: {m.message}")
            self.redis.xadd(self.keys.msgs(s.name), {"t": m.type, "f": frame, "j": m.to_json()},
                            maxlen=self.maxlen, approximate=True)
        except Exception as exc:  # Redis away: this message is lost, the stream keeps running
            s.errors += 1
            if s.errors == 1 or s.errors % 100 == 0:
                log.warning("%s: could not publish (%d so far): %s", s.name, s.errors, exc)

    def _on_frame(self, s: _Stream, frame) -> None:  # processing thread: consistent state of one frame
        now = time.monotonic()
        if now - s.last_ckpt < self.checkpoint_s:
            return
        s.last_ckpt = now
        try:
            blob = checkpoint.snapshot(s.pipeline.workers[0], s.base + frame.index, s.seq)
            self.redis.set(self.keys.ckpt(s.name), blob)
            s.seq += 1
        except Exception as exc:
            s.errors += 1
            log.warning("%s: checkpoint failed: %s", s.name, exc)


def group_actor():
    import ray

    return ray.remote(StreamGroup)
