"""Evaluation and documentation figures (PNG). matplotlib is optional: the ``train`` extra provides it.

matplotlib is imported inside each function, and figures are drawn on a standalone
``matplotlib.figure.Figure`` (rendered by the Agg canvas when saved). pyplot is never imported, so no
global backend is switched, nothing needs a display, and plotting is safe from worker threads.
Every function creates the parent folders of ``path`` and returns it as a ``Path``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from streamdetect.errors import MissingDependencyError
from streamdetect.logs import quiet_matplotlib
from streamdetect.training.metrics import roc_auc, roc_curve

__all__ = ["plot_roc", "plot_score_histograms", "plot_by_length", "plot_training_curves", "image_grid"]

DPI = 120
_REAL_COLOR, _FAKE_COLOR = "#1f77b4", "#d62728"


def _figure(figsize):
    quiet_matplotlib()  # no "generated new fontManager" at INFO when its cache is (re)built
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingDependencyError("matplotlib", "train", "Plotting evaluation figures") from e
    return Figure(figsize=figsize, layout="constrained")


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def plot_roc(curves: Mapping[str, tuple[Sequence, Sequence]], path, title: str = "ROC") -> Path:
    """One ROC line per named ``(labels, scores)`` pair, its AUC in the legend, and the chance diagonal.

    Linear axes over [0, 1]. A curve whose data lacks a class is listed in the legend as "AUC n/a".
    """
    fig = _figure((5.5, 5.0))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="0.6", label="chance")
    for name, (labels, scores) in curves.items():
        auc = roc_auc(labels, scores)
        if math.isnan(auc):
            ax.plot([], [], label=f"{name} (AUC n/a: one class)")
            continue
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, lw=1.8, label=f"{name} (AUC {auc:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false-positive rate (reals called fake)")
    ax.set_ylabel("true-positive rate (fakes caught)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def plot_score_histograms(labels, scores, threshold: float | None, path, title: str = "Scores") -> Path:
    """Histograms of p_fake over [0, 1] for reals and fakes, with the decision threshold as a vertical line."""
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 2 and s.shape[1] == 2:
        s = s[:, 1]
    s = s.reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    fig = _figure((6.0, 4.0))
    ax = fig.add_subplot()
    bins = np.linspace(0.0, 1.0, 41)
    for value, name, color in ((0, "real", _REAL_COLOR), (1, "fake", _FAKE_COLOR)):
        part = np.clip(s[y == value], 0.0, 1.0)
        ax.hist(part, bins=bins, alpha=0.55, color=color, label=f"{name} (n={part.size})")
    if threshold is not None:
        ax.axvline(float(threshold), color="k", ls="--", lw=1.2, label=f"threshold {float(threshold):.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("p_fake")
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_by_length(
    table: Mapping[int, Mapping[str, float]],
    path,
    metrics: Sequence[str] = ("accuracy", "auc"),
    title: str = "Metric vs sequence length",
) -> Path:
    """Metric vs sequence length (frames seen), one line per metric key; ``table`` is {length: {key: value}}.

    Lengths usually double (10, 20, 40, ...), so the x axis is log-2 spaced with ticks at the actual lengths.
    Missing or None values are left as gaps.
    """
    lengths = sorted(int(k) for k in table)
    fig = _figure((6.0, 4.0))
    ax = fig.add_subplot()
    all_vals = []
    for key in metrics:
        vals = []
        for n in lengths:
            row = table.get(n, table.get(str(n), {}))
            v = row.get(key)
            vals.append(float("nan") if v is None else float(v))
        if not np.isnan(vals).all():
            ax.plot(lengths, vals, marker="o", label=key)
            all_vals += [v for v in vals if not math.isnan(v)]
    if len(lengths) > 1 and lengths[0] > 0 and lengths[-1] / lengths[0] >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xticks(lengths)
    ax.set_xticklabels([str(n) for n in lengths])
    ax.minorticks_off()
    if all_vals and 0.0 <= min(all_vals) and max(all_vals) <= 1.0:
        ax.set_ylim(max(0.0, min(all_vals) - 0.05), 1.01)
    ax.set_xlabel("sequence length (frames)")
    ax.set_ylabel("value")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if all_vals:
        ax.legend(fontsize="small")
    return _save(fig, path)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def plot_training_curves(history: Sequence[Mapping[str, float]], path, title: str = "Training") -> Path:
    """Loss and validation curves from a training log.

    x is ``step`` if the rows have it, else ``epoch``, else the row index. Left panel: every numeric key
    containing "loss" (train_loss, val_loss, ...). Right panel (only if any): other numeric keys starting
    with ``val_`` or ``train_`` (val_auc, val_accuracy, ...). Each key is drawn from the rows that have it,
    so validation rows logged less often than training rows are fine.
    """
    rows = list(history)
    xkey = "step" if any("step" in r for r in rows) else "epoch" if any("epoch" in r for r in rows) else None
    keys: list[str] = []
    for r in rows:
        for k, v in r.items():
            if k not in keys and k not in ("step", "epoch") and _is_number(v):
                keys.append(k)
    loss_keys = [k for k in keys if "loss" in k]
    other_keys = [k for k in keys if k not in loss_keys and k.startswith(("val_", "train_"))]

    def series(key):
        xs, ys = [], []
        for i, r in enumerate(rows):
            v = r.get(key)
            if not _is_number(v):
                continue
            x = r.get(xkey, i) if xkey else i
            xs.append(float(x))
            ys.append(float(v))
        return xs, ys

    ncols = 2 if other_keys else 1
    fig = _figure((5.0 * ncols, 4.0))
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    panels = [(axes[0], loss_keys, "loss")] + ([(axes[1], other_keys, "metric")] if other_keys else [])
    for ax, ks, ylabel in panels:
        for k in ks:
            xs, ys = series(k)
            ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, ms=3, label=k)
        ax.set_xlabel(xkey or "row")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ks:
            ax.legend(fontsize="small")
    fig.suptitle(title)
    return _save(fig, path)


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str] | None, cols: int, path, title: str | None = None) -> Path:
    """A grid of RGB uint8 images (H, W, 3) or grayscale (H, W), ``cols`` per row, optional per-image titles."""
    if not len(images):
        raise ValueError("image_grid needs at least one image")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images")
    cols = max(1, min(int(cols), len(images)))
    rows = math.ceil(len(images) / cols)
    fig = _figure((2.2 * cols, 2.2 * rows + (0.3 if title else 0.0)))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= len(images):
            continue
        img = np.asarray(images[i])
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[:, :, 0]
        if img.ndim == 2:
            ax.imshow(img, cmap="gray", vmin=0, vmax=255 if img.dtype == np.uint8 else None)
        else:
            ax.imshow(img)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
