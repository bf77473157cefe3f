"""Per-face temporal state (memory bounded to ~W frames) and the verdict state machine."""

import numpy as np
import pytest

from streamdetect.scoring import ScoringConfig, TrackScorer, Verdict
from streamdetect.windows import TrackWindow, step_tracks


def fresh_run(engine, feats):
    """p_fake after stepping a zero state over `feats` (what a W-frame training clip sees)."""
    state = None
    for f in feats:
        p, state = engine.step(f[None], state)
    return float(p[0])


def test_score_means_the_last_w_frames(engine, rng):
    W = 8
    cfg = engine.card.config
    feats = rng.standard_normal((40, cfg.feature_size), dtype=np.float32) * 2
    window = TrackWindow(W, cfg.hidden_size)
    for t in range(40):
        p = step_tracks(engine, [window], feats[t : t + 1])[0]
        ages = [s.age for s in window.states]
        # the score came from a state that had seen between W/2 and W frames (once enough frames exist)
        seen = min(t + 1, W) if t < W else None
        if seen is None:
            read_age = next(a for a in range(W // 2, W + 1) if np.isclose(p, fresh_run(engine, feats[t + 1 - a : t + 1]), atol=1e-5))
            assert W // 2 <= read_age <= W
        else:
            assert np.isclose(p, fresh_run(engine, feats[: t + 1]), atol=1e-5)
        assert all(a < W for a in ages), "a state outlived the window"
    assert len(window.scores) == W  # the rolling window holds exactly W scores


def test_tracks_are_stepped_in_one_batch(engine, rng):
    calls = []
    real_step = engine.step
    engine.step = lambda f, s=None: (calls.append(len(f)), real_step(f, s))[1]
    try:
        cfg = engine.card.config
        windows = [TrackWindow(10, cfg.hidden_size) for _ in range(3)]
        for _ in range(7):
            step_tracks(engine, windows, rng.standard_normal((3, cfg.feature_size), dtype=np.float32))
    finally:
        del engine.step
    assert calls == [3] * 5 + [6] * 2  # from frame W/2 each face carries two staggered states, same call


def run(scorer, values):
    changes = []
    window = []
    for v in values:
        window = (window + [v])[-20:]
        change = scorer.update(v, window)
        if change is not None:
            changes.append(change)
    return changes


def test_no_verdict_without_evidence():
    scorer = TrackScorer(ScoringConfig(min_frames=10), card_threshold=0.5)
    assert run(scorer, [0.9] * 9) == [] and scorer.verdict is Verdict.UNKNOWN
    assert run(scorer, [0.9]) == [Verdict.ALERT]


def test_hysteresis_and_dwell_stop_flicker():
    cfg = ScoringConfig(method="ema", ema_alpha=1.0, min_frames=1, min_dwell=5, hysteresis=0.05, suspicious_gap=0.15)
    scorer = TrackScorer(cfg, card_threshold=0.5)
    # hovering around the alert threshold must not toggle every frame
    changes = run(scorer, [0.6] + [0.49, 0.51] * 20)
    assert changes == [Verdict.ALERT]
    # a clear drop below threshold - hysteresis leaves alert, but only after the dwell
    changes = run(scorer, [0.2] * 10)
    assert changes == [Verdict.CLEAR]


def test_suspicious_band_and_explicit_threshold():
    cfg = ScoringConfig(method="ema", ema_alpha=1.0, min_frames=1, min_dwell=1, alert=0.8, suspicious_gap=0.2)
    scorer = TrackScorer(cfg, card_threshold=0.5)
    assert run(scorer, [0.1, 0.7, 0.9]) == [Verdict.CLEAR, Verdict.SUSPICIOUS, Verdict.ALERT]


def test_rolling_mean_is_over_the_window():
    scorer = TrackScorer(ScoringConfig(method="mean", min_frames=1), card_threshold=0.5)
    scorer.update(1.0, [0.0, 0.5, 1.0])
    assert scorer.confidence == pytest.approx(0.5)


def test_bad_scoring_config():
    with pytest.raises(ValueError, match="'mean' or 'ema'"):
        ScoringConfig(method="max")


def test_one_alert_rule():
    from streamdetect.scoring import peak_confidence, reaches_alert
    from streamdetect.training import evaluate

    assert reaches_alert(0.5, 0.5) is True and reaches_alert(0.4999, 0.5) is False
    assert reaches_alert(np.array([0.2, 0.5, 0.9]), 0.5).tolist() == [False, True, True]
    assert evaluate.alert_score is peak_confidence
    # the state machine alerts exactly when the rolling mean reaches the threshold (no hysteresis on the way up)
    p = [0.2] * 10 + [0.9] * 3
    scorer, window = TrackScorer(ScoringConfig(method="mean", min_frames=10, min_dwell=1), card_threshold=0.3), []
    alerted = False
    for v in p:
        window = (window + [v])[-20:]
        scorer.update(v, window)
        alerted = alerted or scorer.verdict is Verdict.ALERT
    assert alerted == reaches_alert(peak_confidence(p, window=20, min_frames=10), 0.3)
