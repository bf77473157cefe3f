"""Per-face temporal state: the LSTM's memory kept to about the last W frames, as in training.

An LSTM stepped forever remembers (in principle) everything since the face appeared, but it was trained on
clips of W frames. Each track therefore runs two staggered recurrent states, restarted from zero every W frames
and offset by W/2: the score is always read from the older one, which has seen between W/2 and W frames. Both
states ride in the same batched step call, so the cost is one extra row per face, not a second call.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _State:
    h: np.ndarray
    c: np.ndarray
    age: int = 0  # frames stepped since the last restart


@dataclass
class TrackWindow:
    window: int  # W: frames the score should mean
    hidden: int
    states: list[_State] = field(default_factory=list)
    scores: deque = field(default_factory=deque)  # per-frame p_fake of the last W scored frames
    frames: int = 0  # frames stepped in total

    def __post_init__(self):
        self.scores = deque(maxlen=self.window)
        self.states = [self._fresh()]

    def _fresh(self) -> _State:
        return _State(np.zeros(self.hidden, np.float32), np.zeros(self.hidden, np.float32))

    def rows(self) -> list[_State]:
        """The states to step this frame (1 or 2). The second starts once the first is W/2 frames old."""
        if len(self.states) == 1 and self.states[0].age >= self.window // 2 and self.window >= 2:
            self.states.append(self._fresh())
        return self.states

    def advance(self, new: list[tuple[np.ndarray, np.ndarray, float]]) -> float:
        """Store the stepped states (same order as rows()) and return this frame's p_fake from the older one."""
        for state, (h, c, _) in zip(self.states, new):
            state.h, state.c, state.age = h, c, state.age + 1
        oldest = max(range(len(self.states)), key=lambda i: self.states[i].age)
        p_fake = float(new[oldest][2])
        for state in self.states:
            if state.age >= self.window:  # read at age W, then forget: the next read is the other state
                state.h, state.c, state.age = self._fresh().h, self._fresh().c, 0
        self.frames += 1
        self.scores.append(p_fake)
        return p_fake


def step_tracks(engine, windows: list[TrackWindow], features: np.ndarray) -> list[float]:
    """One batched engine.step for every state of every track; features[i] belongs to windows[i]."""
    if not windows:
        return []
    owners, feats, hs, cs = [], [], [], []
    for i, w in enumerate(windows):
        for state in w.rows():
            owners.append(i)
            feats.append(features[i])
            hs.append(state.h)
            cs.append(state.c)
    p, (h, c) = engine.step(np.stack(feats), (np.stack(hs), np.stack(cs)))
    results: list[list] = [[] for _ in windows]
    for row, i in enumerate(owners):
        results[i].append((h[row], c[row], p[row]))
    return [w.advance(r) for w, r in zip(windows, results)]
