"""Scores to verdicts: rolling confidence per face, and a clear -> suspicious -> alert state machine.

Hysteresis (leave a level only below its threshold minus a margin) and a minimum dwell (stay at least N frames
before moving again) stop a verdict from flickering when the score hovers near a threshold; no verdict at all is
given until a face has enough usable frames.

The alert rule, in one place: a face alerts when its rolling confidence reaches the alert threshold
(`reaches_alert`); judged over a whole track or video, when its *peak* rolling confidence does
(`peak_confidence`). The service's state machine, `streamdetect scan` and `streamdetect evaluate` (which chooses
the model card's threshold on exactly this score) all use these two functions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


def reaches_alert(confidence, threshold: float):
    """The alert rule: rolling confidence >= threshold. Scalars give a bool, arrays an elementwise bool array."""
    if isinstance(confidence, np.ndarray):
        return confidence >= threshold
    return bool(confidence >= threshold)


def peak_confidence(p_fake, window: int = 20, min_frames: int = 10) -> float:
    """The highest rolling `window`-frame mean of per-frame p_fake from the `min_frames`-th frame on: the peak of
    the confidence the service judges (method "mean"; no verdict before min_frames usable frames). Items shorter
    than min_frames: their mean."""
    p = np.asarray(p_fake, np.float64)
    if len(p) < min_frames:
        return float(p.mean())
    c = np.concatenate([[0.0], np.cumsum(p)])
    t = np.arange(min_frames - 1, len(p))
    start = np.maximum(0, t - window + 1)
    return float(((c[t + 1] - c[start]) / (t + 1 - start)).max())


class Verdict(str, enum.Enum):
    UNKNOWN = "unknown"  # not enough evidence yet
    CLEAR = "clear"
    SUSPICIOUS = "suspicious"
    ALERT = "alert"


@dataclass(frozen=True)
class ScoringConfig:
    method: str = "mean"  # "mean" over the window, or "ema"
    ema_alpha: float = 0.1
    alert: float | None = None  # None: the model card's threshold
    suspicious_gap: float = 0.15  # suspicious starts this far below the alert threshold
    hysteresis: float = 0.05
    min_dwell: int = 15  # frames a verdict holds before it may change
    min_frames: int = 10  # usable frames before any verdict

    def __post_init__(self):
        if self.method not in ("mean", "ema"):
            raise ValueError(f"scoring.method must be 'mean' or 'ema', got {self.method!r}")
        if not 0 < self.ema_alpha <= 1:
            raise ValueError(f"scoring.ema_alpha must be in (0, 1], got {self.ema_alpha}")


class TrackScorer:
    """Rolling confidence and verdict of one face."""

    def __init__(self, config: ScoringConfig, card_threshold: float):
        self.cfg = config
        self.alert_at = config.alert if config.alert is not None else card_threshold
        self.suspicious_at = max(0.0, self.alert_at - config.suspicious_gap)
        self.verdict = Verdict.UNKNOWN
        self.confidence: float | None = None
        self.usable = 0
        self._since_change = 0

    def update(self, p_fake: float, window_scores) -> Verdict | None:
        """Feed one usable frame's p_fake (window_scores: the track's last W); returns the new verdict on a change."""
        self.usable += 1
        if self.cfg.method == "mean":
            self.confidence = float(sum(window_scores) / len(window_scores))
        else:
            prev = p_fake if self.confidence is None else self.confidence
            self.confidence = prev + self.cfg.ema_alpha * (p_fake - prev)
        self._since_change += 1
        target = self._target()
        if target is self.verdict:
            return None
        if self.verdict is not Verdict.UNKNOWN and self._since_change < self.cfg.min_dwell:
            return None
        self.verdict, self._since_change = target, 0
        return target

    def _target(self) -> Verdict:
        if self.usable < self.cfg.min_frames:
            return Verdict.UNKNOWN
        c, h = self.confidence, self.cfg.hysteresis
        # The bar to *stay* at a level is lower than the bar to reach it.
        alert_bar = self.alert_at - h if self.verdict is Verdict.ALERT else self.alert_at
        suspicious_bar = self.suspicious_at - h if self.verdict in (Verdict.SUSPICIOUS, Verdict.ALERT) else self.suspicious_at
        if reaches_alert(c, alert_bar):
            return Verdict.ALERT
        if reaches_alert(c, suspicious_bar):
            return Verdict.SUSPICIOUS
        return Verdict.CLEAR
