"""Evaluation metrics for a binary real/fake detector (numpy only).

Conventions used throughout:

* ``labels`` are 0 (real) or 1 (fake); **fake is the positive class**.
* ``scores`` are p_fake (higher means more likely fake); a face is called fake when ``score >= threshold``.
* Every function accepts array-likes (lists, numpy arrays, CPU tensors) and returns plain Python
  floats / ints (or numpy arrays for curves), so results can go straight into a JSON report.
* Where a quantity is undefined because one class is absent (AUC, EER, recall without fakes, FPR without
  reals) it is ``nan``, never an exception and never a numpy warning.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "binary_metrics",
    "roc_curve",
    "roc_auc",
    "bootstrap_auc_ci",
    "paired_auc_difference",
    "equal_error_rate",
    "threshold_at_fpr",
    "summary",
    "fit_temperature",
    "apply_temperature",
    "expected_calibration_error",
    "nll",
]

_NAN = float("nan")


# ----------------------------------------------------------------------------------------------- inputs
def _labels_scores(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to (int64 labels in {0,1}, float scores), both 1-D and the same length."""
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores)
    if s.ndim == 2 and s.shape[1] == 2:  # (N, 2) class probabilities: take p_fake
        s = s[:, 1]
    s = s.reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} labels, {s.shape[0]} scores")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 (real) or 1 (fake); got values {np.unique(y)[:10].tolist()}")
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    if s.size and not np.isfinite(s).all():
        raise ValueError("scores contain nan or inf")
    return y.astype(np.int64), s


def _div(a: float, b: float, empty: float = _NAN) -> float:
    return float(a) / float(b) if b else empty


# ----------------------------------------------------------------------------------------------- threshold metrics
def binary_metrics(labels, scores, threshold: float = 0.5) -> dict:
    """Confusion counts and rates at one threshold (``score >= threshold`` is called fake).

    Returns ``accuracy, precision, recall, f1, fpr, tp, fp, tn, fn, n``.

    Edge cases (no warnings are raised):

    * ``precision`` is 0.0 when nothing is predicted fake (tp + fp == 0).
    * ``f1`` is computed as ``2 tp / (2 tp + fp + fn)``, which equals the harmonic mean of precision and
      recall wherever that is defined and is 0.0 when there are no fake predictions and no fake examples.
    * ``recall`` (true-positive rate) is nan when there are no fake examples; ``fpr`` is nan when there are
      no real examples; ``accuracy`` is nan for empty input.
    """
    y, s = _labels_scores(labels, scores)
    pred = s >= threshold
    pos = y == 1
    tp = int(np.count_nonzero(pred & pos))
    fp = int(np.count_nonzero(pred & ~pos))
    fn = int(np.count_nonzero(~pred & pos))
    tn = int(np.count_nonzero(~pred & ~pos))
    n = int(y.size)
    return {
        "accuracy": _div(tp + tn, n),
        "precision": _div(tp, tp + fp, empty=0.0),
        "recall": _div(tp, tp + fn),
        "f1": _div(2 * tp, 2 * tp + fp + fn, empty=0.0),
        "fpr": _div(fp, fp + tn),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "n": n,
    }


# ----------------------------------------------------------------------------------------------- ROC family
def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve with one point per distinct score (ties are never split).

    Returns ``(fpr, tpr, thresholds)``, each of length ``1 + number of distinct scores``. Point ``i`` is the
    operating point of the rule ``score >= thresholds[i]``; ``thresholds`` are decreasing and start at
    ``+inf`` (everything called real, the point (0, 0)); the last point is the lowest score ((1, 1)).
    If a class is absent, the rate that would divide by its count is all nan.
    """
    y, s = _labels_scores(labels, scores)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if y.size == 0:
        return np.array([_NAN]), np.array([_NAN]), np.array([np.inf])
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # last index of each run of equal scores
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), y.size - 1]
    tps = np.r_[0, np.cumsum(y_sorted)[last]].astype(np.float64)
    fps = np.r_[0, last + 1].astype(np.float64) - tps
    fpr = fps / n_neg if n_neg else np.full(fps.shape, _NAN)
    tpr = tps / n_pos if n_pos else np.full(tps.shape, _NAN)
    thresholds = np.r_[np.inf, s_sorted[last].astype(np.float64)]
    return fpr, tpr, thresholds


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve by the trapezoid rule.

    Because ties share one ROC point, this equals the Mann-Whitney probability
    ``P(score_fake > score_real) + 0.5 * P(score_fake == score_real)``. nan when a class is absent.
    """
    fpr, tpr, _ = roc_curve(labels, scores)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return _NAN
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) * 0.5))


def _stratified_draws(n_real: int, n_fake: int, reps: int, seed: int):
    """Bootstrap resamples as (real indices, fake indices): each class resampled within itself, so every replicate
    keeps both classes at their sizes."""
    if reps < 1:
        raise ValueError(f"reps must be at least 1, got {reps}")
    rng = np.random.default_rng(seed)
    for _ in range(reps):
        yield rng.integers(0, n_real, n_real), rng.integers(0, n_fake, n_fake)


def _pair_auc(real: np.ndarray, fake: np.ndarray) -> float:
    """Mann-Whitney form of the AUC: fraction of (fake, real) pairs ordered right, ties half."""
    return float((fake[:, None] > real[None, :]).mean() + 0.5 * (fake[:, None] == real[None, :]).mean())


def _percentiles(values, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def bootstrap_auc_ci(labels, scores, reps: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the ROC AUC, resampling reals and fakes separately (each class keeps its
    size, so every replicate has both). (nan, nan) when a class is absent."""
    y, s = _labels_scores(labels, scores)
    real, fake = s[y == 0], s[y == 1]
    if not len(real) or not len(fake):
        return _NAN, _NAN
    return _percentiles([_pair_auc(real[r], fake[f]) for r, f in _stratified_draws(len(real), len(fake), reps, seed)],
                        level)


def paired_auc_difference(labels, baseline, other, reps: int = 2000, level: float = 0.95,
                          seed: int = 0) -> dict:
    """AUC(other) - AUC(baseline) on the same items, with a percentile bootstrap interval that draws the same
    resample for both (reals and fakes separately), so it is the interval of the difference, and the range of the
    difference when any one real is left out (with few reals, one clip can decide the sign). Items are resampled
    one by one: where fakes share a source clip or a person the interval is too narrow. nan where a class is
    absent (the range: with fewer than two reals)."""
    y, a = _labels_scores(labels, baseline)
    _, b = _labels_scores(labels, other)
    (ra, fa), (rb, fb) = (a[y == 0], a[y == 1]), (b[y == 0], b[y == 1])
    out = {"diff": _NAN, "ci": (_NAN, _NAN), "drop_one_real": (_NAN, _NAN)}
    if not len(ra) or not len(fa):
        return out
    out["diff"] = _pair_auc(rb, fb) - _pair_auc(ra, fa)
    out["ci"] = _percentiles([_pair_auc(rb[r], fb[f]) - _pair_auc(ra[r], fa[f])
                              for r, f in _stratified_draws(len(ra), len(fa), reps, seed)], level)
    if len(ra) > 1:
        loo = [_pair_auc(np.delete(rb, i), fb) - _pair_auc(np.delete(ra, i), fa) for i in range(len(ra))]
        out["drop_one_real"] = (float(min(loo)), float(max(loo)))
    return out


def equal_error_rate(labels, scores) -> tuple[float, float]:
    """Equal error rate and its threshold: where FPR (reals called fake) meets FNR (fakes called real).

    Walking the ROC points from threshold +inf downwards, FPR - FNR is non-decreasing; the EER is taken on
    the first segment where it becomes >= 0, linearly interpolated along that segment (so both rates are
    equal at the returned value). The threshold is interpolated the same way between the segment's two
    thresholds; on the first segment (whose upper end is +inf) the threshold is the top score.
    Returns ``(nan, nan)`` when a class is absent.
    """
    fpr, tpr, thr = roc_curve(labels, scores)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return _NAN, _NAN
    fnr = 1.0 - tpr
    d = fpr - fnr  # d[0] = -1, d[-1] = +1
    i = int(np.argmax(d >= 0))
    d0, d1 = d[i - 1], d[i]
    alpha = 1.0 if d1 == d0 else float(-d0 / (d1 - d0))
    eer = float(fpr[i - 1] + alpha * (fpr[i] - fpr[i - 1]))
    if np.isinf(thr[i - 1]):
        threshold = float(thr[i])
    else:
        threshold = float(thr[i - 1] + alpha * (thr[i] - thr[i - 1]))
    return eer, threshold


def threshold_at_fpr(labels, scores, target_fpr: float = 0.05) -> float:
    """Smallest threshold whose false-positive rate on the given reals is <= ``target_fpr``.

    With ``n`` real examples at most ``k = floor(target_fpr * n)`` of them may score ``>= threshold``. The
    set of thresholds that achieve this is everything strictly above the (k+1)-th highest real score, so
    the value returned is the next representable number above that score (in the scores' float dtype, so
    the comparison also holds when the threshold is later stored as that dtype). Fakes are ignored: only
    the reals fix the operating point. Ties among reals can make the achieved FPR lower than k/n.

    Raises ``ValueError`` when there are no real examples or ``target_fpr`` is outside [0, 1).
    """
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target_fpr must be in [0, 1); got {target_fpr}")
    y, s = _labels_scores(labels, scores)
    neg = np.sort(s[y == 0])[::-1]
    if neg.size == 0:
        raise ValueError("threshold_at_fpr needs at least one real (label 0) example")
    k = int(math.floor(target_fpr * neg.size + 1e-9))  # allowed false positives (guard 0.29*100 = 28.99..)
    return float(np.nextafter(neg[k], np.asarray(np.inf, dtype=neg.dtype)))


def summary(labels, scores, threshold: float = 0.5) -> dict:
    """``binary_metrics`` at ``threshold`` plus ``auc``, ``eer``, ``eer_threshold``, ``n_real``, ``n_fake``.

    Floats are rounded to 4 decimals (nan stays nan); counts stay ints.
    """
    y, s = _labels_scores(labels, scores)
    out = binary_metrics(y, s, threshold)
    out["auc"] = roc_auc(y, s)
    out["eer"], out["eer_threshold"] = equal_error_rate(y, s)
    out["n_real"] = int(np.count_nonzero(y == 0))
    out["n_fake"] = int(np.count_nonzero(y == 1))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


# ----------------------------------------------------------------------------------------------- calibration
def _logits2(logits) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1:  # a single fake logit: softmax([0, z]) == sigmoid(z)
        z = np.stack([np.zeros_like(z), z], axis=1)
    if z.ndim != 2 or z.shape[1] != 2:
        raise ValueError(f"logits must have shape (N, 2) (or (N,) fake logits); got {z.shape}")
    return z


def _softmax_nll(z: np.ndarray, y: np.ndarray, t: float) -> float:
    a = z / t
    lse = np.logaddexp(a[:, 0], a[:, 1])
    return float(np.mean(lse - a[np.arange(y.size), y]))


def apply_temperature(logits, temperature: float) -> np.ndarray:
    """p_fake = softmax(logits / T)[:, 1] for (N, 2) logits (or sigmoid(z / T) for (N,) fake logits)."""
    z = _logits2(logits) / float(temperature)
    return 1.0 / (1.0 + np.exp(np.clip(z[:, 0] - z[:, 1], -700, 700)))


def fit_temperature(logits, labels, t_min: float = 0.05, t_max: float = 20.0) -> float:
    """Temperature T in [t_min, t_max] that minimises the NLL of softmax(logits / T) (temperature scaling).

    ``logits`` is (N, 2) (real, fake) or (N,) fake logits. The search is on log T: a 121-point grid, then a
    golden-section refinement inside the bracket around the best grid point (NLL is convex in 1/T, hence
    unimodal in log T). T > 1 softens an over-confident model. Returns 1.0 for empty input.
    """
    z = _logits2(logits)
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    if y.size != z.shape[0]:
        raise ValueError(f"logits and labels differ in length: {z.shape[0]} vs {y.size}")
    if y.size == 0:
        return 1.0
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not 0 < t_min < t_max:
        raise ValueError(f"need 0 < t_min < t_max; got {t_min}, {t_max}")
    grid = np.linspace(math.log(t_min), math.log(t_max), 121)
    vals = [_softmax_nll(z, y, math.exp(g)) for g in grid]
    i = int(np.argmin(vals))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    f = lambda g: _softmax_nll(z, y, math.exp(g))  # noqa: E731
    inv_phi = (math.sqrt(5) - 1) / 2
    c, d = hi - inv_phi * (hi - lo), lo + inv_phi * (hi - lo)
    fc, fd = f(c), f(d)
    for _ in range(60):
        if fc <= fd:
            hi, d, fd = d, c, fc
            c = hi - inv_phi * (hi - lo)
            fc = f(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + inv_phi * (hi - lo)
            fd = f(d)
    best = (lo + hi) / 2
    # never return something worse than the best grid point (flat or degenerate NLL)
    if f(best) > vals[i]:
        best = grid[i]
    return float(math.exp(best))


def _probs(probs) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 2:
        p = p[:, 1]
    return p.reshape(-1)


def expected_calibration_error(labels, probs, bins: int = 10) -> float:
    """ECE of p_fake: equal-width bins over [0, 1] (the last bin includes 1.0),
    ``sum_b (n_b / N) * |mean(p_fake in b) - fraction fake in b|``.

    This is the reliability diagram of the fake class (the same axis as the score histograms); ``probs`` may
    also be (N, 2) class probabilities, in which case column 1 is used. nan for empty input.
    """
    y = np.asarray(labels).reshape(-1).astype(np.float64)
    p = _probs(probs)
    if y.shape != p.shape:
        raise ValueError(f"labels and probs differ in length: {y.size} vs {p.size}")
    if y.size == 0:
        return _NAN
    idx = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(idx, minlength=bins).astype(np.float64)
    sum_p = np.bincount(idx, weights=p, minlength=bins)
    sum_y = np.bincount(idx, weights=y, minlength=bins)
    filled = counts > 0
    gap = np.abs(sum_p[filled] - sum_y[filled]) / counts[filled]
    return float(np.sum(counts[filled] / y.size * gap))


def nll(labels, probs, eps: float = 1e-12) -> float:
    """Mean binary cross-entropy of p_fake (clipped to [eps, 1 - eps]); nan for empty input."""
    y = np.asarray(labels).reshape(-1).astype(np.float64)
    p = np.clip(_probs(probs), eps, 1.0 - eps)
    if y.shape != p.shape:
        raise ValueError(f"labels and probs differ in length: {y.size} vs {p.size}")
    if y.size == 0:
        return _NAN
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))
