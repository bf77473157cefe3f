"""Evaluation metrics on hand-made scores (every expected value worked out in the comments) and the plots."""

import math
import sys
import warnings

import numpy as np
import pytest

from streamdetect.errors import MissingDependencyError
from streamdetect.training.metrics import (
    apply_temperature,
    binary_metrics,
    equal_error_rate,
    expected_calibration_error,
    fit_temperature,
    nll,
    roc_auc,
    roc_curve,
    summary,
    threshold_at_fpr,
)

# The 3 + 3 example used by several tests.
#   reals: 0.1, 0.3, 0.6        fakes: 0.4, 0.7, 0.9
SMALL_Y = [0, 0, 0, 1, 1, 1]
SMALL_S = [0.1, 0.3, 0.6, 0.4, 0.7, 0.9]


def test_perfect_separation():
    y = [0, 0, 1, 1]
    s = [0.1, 0.2, 0.8, 0.9]
    # every fake outscores every real: 4/4 pairs -> AUC 1
    assert roc_auc(y, s) == 1.0
    # ROC (score >= t): t=inf (0,0); t=.9 (0,.5); t=.8 (0,1) -> FPR = FNR = 0 at t=.8; then (.5,1), (1,1)
    eer, thr = equal_error_rate(y, s)
    assert eer == 0.0 and thr == pytest.approx(0.8)
    fpr, tpr, t = roc_curve(y, s)
    np.testing.assert_allclose(fpr, [0, 0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1, 1])
    assert t[0] == np.inf
    np.testing.assert_allclose(t[1:], [0.9, 0.8, 0.2, 0.1])


def test_fully_inverted():
    y = [1, 1, 0, 0]
    s = [0.1, 0.2, 0.8, 0.9]
    # no fake outscores any real: 0/4 pairs -> AUC 0
    assert roc_auc(y, s) == 0.0
    # t=.9: FPR .5, FNR 1; t=.8: FPR 1, FNR 1 -> they meet at 1
    eer, thr = equal_error_rate(y, s)
    assert eer == pytest.approx(1.0) and thr == pytest.approx(0.8)


def test_constant_scores_are_one_tie():
    y = [0, 1, 0, 1, 1]
    s = [0.5] * 5
    # all 6 real/fake pairs tie -> Mann-Whitney 6 * 1/2 / 6 = 0.5; the ROC is the single segment (0,0)-(1,1)
    fpr, tpr, t = roc_curve(y, s)
    np.testing.assert_allclose(fpr, [0, 1])
    np.testing.assert_allclose(tpr, [0, 1])
    assert roc_auc(y, s) == 0.5
    # FPR - FNR goes -1 -> +1 along that segment: crosses half way, EER 0.5; the upper end is +inf so the
    # threshold reported is the (only) score
    eer, thr = equal_error_rate(y, s)
    assert eer == pytest.approx(0.5) and thr == 0.5


def test_ties_one_point_per_distinct_score_and_auc_is_mann_whitney():
    # reals 0.2, 0.5 ; fakes 0.5, 0.8
    y = [0, 0, 1, 1]
    s = [0.2, 0.5, 0.5, 0.8]
    # pairs (fake, real): (.5,.2) win, (.5,.5) tie, (.8,.2) win, (.8,.5) win -> (3 + 0.5) / 4 = 0.875
    fpr, tpr, t = roc_curve(y, s)
    # distinct scores .8, .5, .2 -> 4 points; the tied .5 pair moves FPR and TPR together
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])
    assert roc_auc(y, s) == pytest.approx(0.875)
    # the same on a random tie-heavy sample against a brute-force Mann-Whitney count
    rng = np.random.default_rng(3)
    yy = rng.integers(0, 2, 200)
    ss = rng.integers(0, 7, 200) / 6.0
    pos, neg = ss[yy == 1], ss[yy == 0]
    diff = pos[:, None] - neg[None, :]
    mw = (np.sum(diff > 0) + 0.5 * np.sum(diff == 0)) / diff.size
    assert roc_auc(yy, ss) == pytest.approx(mw, abs=1e-12)


def test_small_example_auc_and_threshold_metrics():
    # pairs fake > real: 0.4 beats 0.1, 0.3 (2); 0.7 beats all 3; 0.9 beats all 3 -> 8 of 9
    assert roc_auc(SMALL_Y, SMALL_S) == pytest.approx(8 / 9)
    m = binary_metrics(SMALL_Y, SMALL_S, 0.5)
    # called fake (>= .5): 0.6 (real), 0.7, 0.9 (fakes) -> tp 2, fp 1; fake 0.4 missed -> fn 1; reals .1,.3 -> tn 2
    assert (m["tp"], m["fp"], m["tn"], m["fn"], m["n"]) == (2, 1, 2, 1, 6)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3)  # 2 / (2 + 1)
    assert m["recall"] == pytest.approx(2 / 3)  # 2 / (2 + 1)
    assert m["f1"] == pytest.approx(2 / 3)  # harmonic mean of 2/3 and 2/3
    assert m["fpr"] == pytest.approx(1 / 3)  # 1 of 3 reals
    # threshold is inclusive: at 0.6 the real 0.6 is still called fake
    assert binary_metrics(SMALL_Y, SMALL_S, 0.6)["fp"] == 1
    assert binary_metrics(SMALL_Y, SMALL_S, 0.61)["fp"] == 0


def test_no_positive_predictions_are_zero_not_nan():
    # threshold above every score: tp = fp = 0 -> precision 0.0 (defined so), recall 0/3 = 0, f1 = 0/(0+0+3) = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = binary_metrics(SMALL_Y, SMALL_S, 0.95)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    assert m["fpr"] == 0.0 and m["accuracy"] == pytest.approx(0.5)


def test_eer_known_example_exact_crossing():
    # SMALL example, ROC from the top: t=.9 (FPR 0, FNR 2/3); t=.7 (0, 1/3); t=.6 (1/3, 1/3) -> EER 1/3 at 0.6
    eer, thr = equal_error_rate(SMALL_Y, SMALL_S)
    assert eer == pytest.approx(1 / 3)
    assert thr == pytest.approx(0.6)


def test_eer_interpolates_between_points():
    # reals 0.1, 0.5, 0.7 ; fakes 0.6, 0.9   (3 reals, 2 fakes)
    y = [0, 0, 0, 1, 1]
    s = [0.1, 0.5, 0.7, 0.6, 0.9]
    # t=.9: FPR 0,   FNR 1/2  (d = FPR - FNR = -1/2)
    # t=.7: FPR 1/3, FNR 1/2  (d = -1/6)
    # t=.6: FPR 1/3, FNR 0    (d = +1/3)
    # d crosses 0 on the .7 -> .6 segment at alpha = (1/6) / (1/6 + 1/3) = 1/3:
    #   FPR = 1/3 + 1/3 * 0 = 1/3, FNR = 1/2 + 1/3 * (0 - 1/2) = 1/3 -> EER 1/3
    #   threshold = 0.7 + 1/3 * (0.6 - 0.7) = 0.6667
    eer, thr = equal_error_rate(y, s)
    assert eer == pytest.approx(1 / 3)
    assert thr == pytest.approx(0.7 - 0.1 / 3)


def test_threshold_at_fpr_on_ten_reals():
    reals = np.arange(10) * 0.1 + 0.05  # 0.05, 0.15, ..., 0.95
    fakes = np.array([0.5, 0.9, 0.99])
    y = np.r_[np.zeros(10, int), np.ones(3, int)]
    s = np.r_[reals, fakes]
    # 5% of 10 reals = 0.5 -> no real may score >= threshold -> the threshold is just above the top real 0.95
    t = threshold_at_fpr(y, s, 0.05)
    assert 0.95 < t < 0.95 + 1e-12
    assert binary_metrics(y, s, t)["fpr"] == 0.0
    # (the fake at 0.99 is still caught; 0.5 and 0.9 are not)
    assert binary_metrics(y, s, t)["tp"] == 1
    # 0% behaves the same
    assert threshold_at_fpr(y, s, 0.0) == t
    # 10% of 10 = 1 real allowed (0.95) -> just above the second highest real 0.85; FPR exactly 0.1
    t10 = threshold_at_fpr(y, s, 0.10)
    assert 0.85 < t10 < 0.85 + 1e-12
    assert binary_metrics(y, s, t10)["fpr"] == pytest.approx(0.1)
    # 29% of 100 reals must allow 29 (0.29 * 100 is 28.999... in floating point)
    r100 = np.linspace(0, 1, 100)
    t29 = threshold_at_fpr(np.zeros(100, int), r100, 0.29)
    assert binary_metrics(np.zeros(100, int), r100, t29)["fp"] == 29
    # float32 scores: the threshold still excludes the top real after a round trip through float32
    s32 = s.astype(np.float32)
    t32 = threshold_at_fpr(y, s32, 0.05)
    assert not (s32[:10] >= np.float32(t32)).any()
    with pytest.raises(ValueError):
        threshold_at_fpr([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError):
        threshold_at_fpr(y, s, 1.0)


def test_one_class_gives_nan_without_crashing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero RuntimeWarnings either
        assert math.isnan(roc_auc([1, 1, 1], [0.2, 0.5, 0.9]))
        assert math.isnan(roc_auc([0, 0], [0.2, 0.5]))
        assert all(math.isnan(v) for v in equal_error_rate([0, 0], [0.2, 0.5]))
        m = summary([0, 0, 0], [0.2, 0.6, 0.9], 0.5)
    assert math.isnan(m["auc"]) and math.isnan(m["eer"]) and math.isnan(m["recall"])
    assert m["fpr"] == pytest.approx(0.6667)  # 2 of 3 reals >= 0.5, rounded to 4 decimals
    assert (m["n_real"], m["n_fake"]) == (3, 0)


def test_summary_rounds_and_counts():
    m = summary(SMALL_Y, SMALL_S, 0.5)
    assert m["auc"] == 0.8889  # 8/9 to 4 decimals
    assert m["eer"] == 0.3333 and m["eer_threshold"] == 0.6
    assert m["accuracy"] == 0.6667 and m["f1"] == 0.6667
    assert (m["n_real"], m["n_fake"], m["n"], m["tp"]) == (3, 3, 6, 2)
    assert isinstance(m["tp"], int)
    assert set(m) >= {"accuracy", "precision", "recall", "f1", "fpr", "tp", "fp", "tn", "fn", "n", "auc", "eer", "eer_threshold"}


def test_input_validation():
    with pytest.raises(ValueError):
        roc_auc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        roc_auc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        roc_auc([0, 1], [0.1, float("nan")])


def _calibrated(n=40_000, seed=0):
    """Labels drawn from sigmoid(d): the logits (0, d) are calibrated by construction."""
    rng = np.random.default_rng(seed)
    d = rng.normal(0.0, 2.0, n)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-d))).astype(int)
    return np.stack([np.zeros(n), d], axis=1), y


def test_fit_temperature_recovers_two():
    logits, y = _calibrated()
    # a calibrated model needs no temperature
    assert fit_temperature(logits, y) == pytest.approx(1.0, abs=0.05)
    # the same logits doubled are over-confident by exactly a factor 2
    t = fit_temperature(2 * logits, y)
    assert t == pytest.approx(2.0, abs=0.08)
    # 1-D fake logits mean the same thing as (0, z) pairs
    assert fit_temperature(2 * logits[:, 1], y) == pytest.approx(t, rel=1e-6)
    # bounds are respected
    assert 0.05 <= fit_temperature(1e3 * logits, y) <= 20.0


def test_ece_and_nll_lower_after_temperature():
    logits, y = _calibrated(seed=1)
    hot = 2 * logits
    t = fit_temperature(hot, y)
    before, after = apply_temperature(hot, 1.0), apply_temperature(hot, t)
    assert expected_calibration_error(y, after) < expected_calibration_error(y, before)
    assert expected_calibration_error(y, after) < 0.02
    assert nll(y, after) < nll(y, before)
    # softmax of (0, z) is sigmoid(z)
    np.testing.assert_allclose(before, 1 / (1 + np.exp(-hot[:, 1])))


def test_ece_and_nll_by_hand():
    # bins of width 0.5: {0.2, 0.4} -> mean p 0.3, fraction fake 0/2 -> gap 0.3
    #                    {0.6, 1.0} -> mean p 0.8, fraction fake 2/2 -> gap 0.2  (1.0 falls in the last bin)
    # ECE = 2/4 * 0.3 + 2/4 * 0.2 = 0.25
    assert expected_calibration_error([0, 0, 1, 1], [0.2, 0.4, 0.6, 1.0], bins=2) == pytest.approx(0.25)
    # NLL of p_fake 0.8 on a fake and 0.8 on a real: -(ln 0.8 + ln 0.2) / 2
    assert nll([1, 0], [0.8, 0.8]) == pytest.approx(-(math.log(0.8) + math.log(0.2)) / 2)
    # (N, 2) probabilities use column 1
    assert nll([1, 0], [[0.2, 0.8], [0.2, 0.8]]) == pytest.approx(nll([1, 0], [0.8, 0.8]))


# ----------------------------------------------------------------------------------------------- plots
@pytest.fixture
def plots():
    pytest.importorskip("matplotlib", reason="matplotlib (the 'train' extra) is not installed")
    from streamdetect.training import plots

    return plots


def _png(path):
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_pngs(plots, tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(0, 0.2, 300), 0, 1)
    out = plots.plot_roc({"model": (y, s), "random": (y, rng.random(300)), "reals only": ([0, 0], [0.1, 0.2])},
                         tmp_path / "a" / "roc.png", "ROC")
    _png(out)
    _png(plots.plot_score_histograms(y, s, 0.5, tmp_path / "b" / "hist.png", "scores"))
    table = {10: {"accuracy": 0.7, "auc": 0.75}, 20: {"accuracy": 0.8, "auc": 0.85}, 40: {"accuracy": 0.85}, 80: {"accuracy": 0.9, "auc": 0.95}}
    _png(plots.plot_by_length(table, tmp_path / "c" / "len.png", ("accuracy", "auc")))
    history = [{"step": i * 10, "train_loss": 1 / (i + 1), "lr": 1e-3} for i in range(20)]
    history += [{"step": i * 50, "val_loss": 0.8 / (i + 1), "val_auc": 0.5 + 0.1 * i} for i in range(1, 4)]
    _png(plots.plot_training_curves(history, tmp_path / "d" / "train.png"))
    _png(plots.plot_training_curves([{"epoch": 1, "train_loss": 0.7}, {"epoch": 2, "train_loss": 0.5}], tmp_path / "d" / "loss_only.png"))
    imgs = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(5)] + [np.zeros((64, 64), np.uint8)]
    grid = plots.image_grid(imgs, [f"#{i}" for i in range(6)], 4, tmp_path / "e" / "grid.png")
    _png(grid)
    _png(plots.image_grid(imgs[:2], None, 3, tmp_path / "e" / "grid2.png"))


def test_plots_need_matplotlib(monkeypatch, tmp_path):
    from streamdetect.training import plots

    # simulate an install without the 'train' extra
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingDependencyError, match=r"streamdetect\[train\]"):
        plots.plot_score_histograms([0, 1], [0.2, 0.8], 0.5, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
