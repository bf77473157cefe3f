"""`streamdetect evaluate`: metrics on hand-made scores, the report files, and the card it writes."""

import json

import numpy as np
import pytest
import torch

from streamdetect.model import ModelConfig, load_checkpoint, new_model, save_checkpoint
from streamdetect.training.evaluate import Scored, analyse, evaluate
from tests.support.prepared import make_prepared


def item(key, label, group, family, logit, frames=100, kind="video"):
    return Scored(key, label, group, family, kind, np.full(frames, float(logit)),
                  {n: float(logit) for n in (10, 20, 40, 60, 80, 100) if n <= frames})


def sig(x):
    return 1 / (1 + np.exp(-x))


def test_metrics_on_hand_made_scores():
    scored = [item("r1", 0, "real", "real", -3), item("r2", 0, "real", "real", -2),
              item("a1", 1, "A", "blend", 2), item("a2", 1, "A", "blend", 3),
              item("b1", 1, "B", "synthesis", -2.5, frames=1, kind="image"),
              item("r1#sbi", 1, "SBI", "blend", 1)]
    r = analyse(scored, temperature=1.0, threshold=0.5)
    # video scores: reals .047 .119; A .881 .953; B .076 (between the reals); SBI .731 (left out of "video")
    assert r["video"]["auc"] == pytest.approx(5 / 6, abs=1e-4)  # B beats r1 only: 5 of 6 pairs
    assert (r["video"]["tp"], r["video"]["fn"], r["video"]["fp"], r["video"]["tn"]) == (2, 1, 0, 2)
    assert r["video"]["precision"] == 1.0 and r["video"]["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert r["video_with_sbi"]["tp"] == 3
    assert r["by_method"]["A"] == {"n": 2, "auc_vs_real": 1.0, "auc_ci95": [1.0, 1.0], "recall": 1.0,
                                   "mean_score": pytest.approx(0.917, abs=1e-3)}
    assert r["by_method"]["B"]["auc_vs_real"] == 0.5 and r["by_method"]["B"]["recall"] == 0.0
    assert r["by_method"]["SBI"]["recall"] == 1.0
    assert r["by_family"]["blend"]["auc_vs_real"] == 1.0 and r["by_family"]["synthesis"]["n"] == 1
    # the paper's table: only videos long enough; the photo is in no row
    assert set(r["by_length"]) == {10, 20, 40, 60, 80, 100} and r["by_length"][100]["n"] == 4
    # frame level counts every frame of every item except the self-blended ones
    assert r["frame"]["n"] == 4 * 100 + 1
    assert r["real_false_positive_rate"] == 0.0

    chosen = analyse(scored, temperature=1.0, threshold=None, target_fpr=0.0)
    assert chosen["threshold"]["chosen_here"] and chosen["threshold"]["value"] == pytest.approx(sig(-2), abs=1e-3)
    assert chosen["real_false_positive_rate"] == 0.0


def test_temperature_is_fitted_on_over_confident_scores():
    rng = np.random.default_rng(0)
    scored = []
    for i in range(200):  # margins 8x too large for how often they are right
        label = int(rng.random() < 0.5)
        margin = (1.0 if label else -1.0) * 8 + rng.normal(0, 8)
        scored.append(item(f"x{i}", label, "M" if label else "real", "blend" if label else "real", margin, frames=3))
    r = analyse(scored)
    c = r["calibration"]
    assert c["fitted_here"] and c["temperature"] > 2
    assert c["nll_after"] < c["nll_before"] and c["ece_after"] < c["ece_before"]


def test_evaluate_writes_report_plots_and_card(tmp_path):
    data = make_prepared(tmp_path / "prepared", reals=3, fakes=3, frames=12)
    torch.manual_seed(0)
    model = new_model(ModelConfig(backbone="mobilenet_v2", hidden_size=16))
    ckpt = save_checkpoint(model, tmp_path / "m.safetensors")
    out = tmp_path / "report"
    r = evaluate(ckpt, [data], out, window=6, write_card=tmp_path / "calibrated.safetensors", progress=False)
    for name in ("metrics.json", "report.md", "roc.png", "scores.png", "by_length.png"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "metrics.json").read_text())["video"]["n"] == 3 + 3 + 2
    assert r["by_method"]["SBI"]["n"] == 5  # one self-blended copy per real item (3 videos + 2 photos)
    card = load_checkpoint(tmp_path / "calibrated.safetensors").card
    assert card.threshold == r["threshold"]["value"] and card.temperature == r["calibration"]["temperature"]
    assert card.metrics["video"]["auc"] == r["video"]["auc"]
    # test data: the card's own calibration is used, nothing is fitted
    again = evaluate(tmp_path / "calibrated.safetensors", [data], tmp_path / "r2", window=6, calibrate=False,
                     progress=False)
    assert not again["threshold"]["chosen_here"] and again["threshold"]["value"] == card.threshold


def test_alert_score_is_the_services_rolling_mean_peak():
    from streamdetect.training.evaluate import alert_score

    p = np.array([0.9] * 3 + [0.1] * 10 + [0.8] * 4 + [0.2] * 3)
    # verdicts exist from frame 10 (min_frames); windows of 4: the best is frames 13..16, all 0.8
    assert alert_score(p, window=4, min_frames=10) == pytest.approx(0.8)
    # the early 0.9 burst is never judged alone: before min_frames there is no verdict
    assert alert_score(p, window=3, min_frames=10) == pytest.approx(0.8)
    assert alert_score(np.array([0.3, 0.5]), window=20, min_frames=10) == pytest.approx(0.4)  # short: its mean
