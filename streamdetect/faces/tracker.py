"""ByteTrack-style face tracker: stable ids across frames with a constant-velocity motion model.

Pure numpy + stdlib. Greedy IoU matching is used instead of Hungarian: a frame holds a handful of faces,
where greedy by descending IoU almost always gives the same answer and stays easy to read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .types import Box, Detection, Track

ALPHA = 0.5  # velocity smoothing: half new evidence, half history, to damp detector jitter
MIN_SIZE = 1.0  # predicted boxes never shrink below a pixel, so IoU stays defined


@dataclass(frozen=True)
class TrackUpdate:
    active: tuple[Track, ...]  # reported tracks seen (missed == 0) or predicted in this frame, by id
    ended: tuple[int, ...]  # ids of reported tracks that ended at this call


def _cwh(box: Box) -> np.ndarray:
    """Centre-x, centre-y, width, height: the space velocity lives in (size change is separate from motion)."""
    return np.array([*box.center, box.width, box.height], dtype=float)


def _box(s: np.ndarray) -> Box:
    cx, cy, w, h = s
    return Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


@dataclass(eq=False)
class _State:
    """Mutable per-track state; the public, frozen `Track` is built from it on every call."""

    track_id: int
    det: Detection
    confirmed: bool  # has ever had hits >= min_hits, i.e. has been reported to the caller
    est: np.ndarray = field(init=False)  # current (possibly predicted) cx, cy, w, h
    last_obs: np.ndarray = field(init=False)  # cx, cy, w, h of the last real detection
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # per frame
    since_obs: int = 0  # frames since the last real detection, predict_only frames included
    age: int = 0
    hits: int = 1
    missed: int = 0

    def __post_init__(self):
        self.est = self.last_obs = _cwh(self.det.box)

    def predicted(self) -> np.ndarray:
        nxt = self.est + self.velocity
        nxt[2:] = np.maximum(nxt[2:], MIN_SIZE)
        return nxt

    def advance(self) -> None:
        """One frame without a match: move by the velocity, keypoints by the same centre offset."""
        nxt = self.predicted()
        kp = self.det.keypoints
        if kp is not None:
            kp = np.asarray(kp, dtype=float) + (nxt[:2] - self.est[:2])
        self.est, self.det = nxt, Detection(_box(nxt), self.det.score, kp)
        self.age += 1
        self.since_obs += 1

    def observe(self, det: Detection, min_hits: int) -> None:
        obs = _cwh(det.box)
        self.since_obs += 1
        # Spread the displacement over every frame since the last detection (misses and predict_only gaps).
        v = (obs - self.last_obs) / self.since_obs
        # The first measurement is taken whole: smoothing it against the zero prior would halve the speed
        # and lose a fast face on the next frame.
        self.velocity = v if self.hits == 1 else ALPHA * v + (1 - ALPHA) * self.velocity
        self.det, self.est, self.last_obs = det, obs, obs
        self.since_obs, self.missed = 0, 0
        self.age += 1
        self.hits += 1
        self.confirmed = self.confirmed or self.hits >= min_hits

    def public(self) -> Track:
        return Track(self.track_id, self.det, self.age, self.hits, self.missed)


def _greedy(tracks: list[_State], dets: list[Detection], threshold: float) -> list[tuple[int, int]]:
    """(track index, detection index) pairs by descending IoU of the predicted box, each used once."""
    if not tracks or not dets:
        return []
    preds = [_box(t.predicted()) for t in tracks]
    iou = np.array([[p.iou(d.box) for d in dets] for p in preds])
    pairs, used_t, used_d = [], set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):  # stable: ties resolve by track age, then order
        ti, di = (int(i) for i in np.unravel_index(flat, iou.shape))
        if iou[ti, di] < threshold or iou[ti, di] <= 0:
            break
        if ti not in used_t and di not in used_d:
            pairs.append((ti, di))
            used_t.add(ti)
            used_d.add(di)
    return pairs


class FaceTracker:
    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 10, min_hits: int = 1, high_score: float = 0.6):
        if min_hits < 1 or max_missed < 0:
            raise ValueError(f"need min_hits >= 1 and max_missed >= 0, got {min_hits}, {max_missed}")
        self.iou_threshold, self.max_missed = iou_threshold, max_missed
        self.min_hits, self.high_score = min_hits, high_score
        self._tracks: list[_State] = []  # kept in creation (= id) order
        self._next_id = 1

    def update(self, detections: list[Detection]) -> TrackUpdate:
        """Advance one frame with the detector's output; unmatched tracks are predicted and count a miss."""
        high = [d for d in detections if d.score >= self.high_score]
        low = [d for d in detections if d.score < self.high_score]
        matched: dict[int, Detection] = {}
        used_high: set[int] = set()
        # Stage 1: confident detections claim tracks first. Stage 2: weak ones (blur, occlusion) may only
        # keep the remaining tracks alive, never start one, which is what stops low-score false positives.
        for ti, di in _greedy(self._tracks, high, self.iou_threshold):
            matched[ti] = high[di]
            used_high.add(di)
        rest = [i for i in range(len(self._tracks)) if i not in matched]
        for ri, di in _greedy([self._tracks[i] for i in rest], low, self.iou_threshold):
            matched[rest[ri]] = low[di]

        kept, ended = [], []
        for i, t in enumerate(self._tracks):
            if i in matched:
                t.observe(matched[i], self.min_hits)
            else:
                t.advance()
                t.missed += 1
                if not t.confirmed:
                    continue  # a never-reported track missing a frame was a blip: drop it silently
                if t.missed > self.max_missed:
                    ended.append(t.track_id)
                    continue
            kept.append(t)

        for di, d in enumerate(high):
            if di not in used_high:
                kept.append(_State(self._next_id, d, confirmed=self.min_hits <= 1))
                self._next_id += 1
        self._tracks = kept
        return TrackUpdate(self._active(), tuple(ended))

    def predict_only(self) -> TrackUpdate:
        """Advance one frame with no detector run: tracks move by their velocity and no miss is counted."""
        for t in self._tracks:
            t.advance()
        return TrackUpdate(self._active(), ())

    def expected(self) -> list[tuple[int, Box, bool]]:
        """(id, box, confirmed) of every live track where the next `update` looks for it (its predicted box);
        faces.stage asks for these to look for small faces around them."""
        return [(t.track_id, _box(t.predicted()), t.confirmed) for t in self._tracks]

    def reset(self) -> tuple[int, ...]:
        """End every track (stream reconnect); returns the ended ids. Ids are not reused afterwards."""
        ended = tuple(t.track_id for t in self._tracks if t.confirmed)
        self._tracks = []
        return ended

    def _active(self) -> tuple[Track, ...]:
        return tuple(t.public() for t in self._tracks if t.confirmed)
