"""Training: config, balanced batches, loss goes down, checkpoints and exact resume."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from streamdetect.errors import DatasetError
from streamdetect.model import load_checkpoint
from streamdetect.training.config import load_config
from streamdetect.training.train import Trainer, sequence_loss
from tests.support.prepared import make_prepared

TINY = {"model": {"backbone": "mobilenet_v2", "hidden_size": 16, "dropout": 0.0}, "pretrained": False,
        "lr": 1e-3, "batch_size": 4, "seq_len": 4, "val_every": 2, "checkpoint_every": 1,
        "augment": {"h264": 0.0}, "threads": 2}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("prepared"))


def tiny_config(prepared, out, **changes):
    return load_config(None, **{**TINY, "data": [str(prepared)], "out": str(out), **changes})


def test_config_rejects_unknown_keys_and_names_them(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("lr_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['lr_rate'\]"):
        load_config(path)
    with pytest.raises(ValueError, match="model: unknown"):
        load_config(None, model={"backbone": "mobilenet_v2", "layers": 2})


def test_paper_defaults():
    cfg = load_config(None)
    assert (cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.seq_len) == (1e-5, 1e-3, 4, 20)
    mc = cfg.model.to_config()
    assert (mc.backbone, mc.hidden_size, mc.dropout, mc.input_size) == ("resnext50_32x4d", 2048, 0.4, 112)


def test_batches_are_balanced_deterministic_and_identity_split(prepared, tmp_path):
    trainer = Trainer(tiny_config(prepared, tmp_path / "run"), progress=False)
    frames, expr, labels = trainer.sampler.batch(0)
    assert frames.shape == (4, 4, 112, 112, 3) and frames.dtype == np.uint8 and expr is None
    assert sorted(labels.tolist()) == [0, 0, 1, 1]
    again = trainer.sampler.batch(0)[0]
    assert np.array_equal(frames, again)  # a batch depends only on (seed, step)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    ids = lambda keys: {k.split("_")[1] for k in keys if not k.startswith("photo")}  # noqa: E731
    assert not ids(split["train"]) & ids(split["val"])  # real_i and fake_i share identity id_i


def test_two_steps_reduce_the_loss_on_a_tiny_batch(prepared, tmp_path):
    trainer = Trainer(tiny_config(prepared, tmp_path / "run", freeze_bn=True), progress=False)
    frames, _, labels = trainer.sampler.batch(0)
    x, y = torch.from_numpy(frames), torch.from_numpy(labels)

    def loss():
        trainer.model.train()
        trainer.model.backbone.eval()  # frozen BN: the same function before and after
        with torch.no_grad():
            return float(sequence_loss(trainer.model(x), y, "all"))

    before = loss()
    trainer.sampler.batch = lambda step: (frames, None, labels)  # the same tiny batch twice
    trainer.train_step(0)
    trainer.train_step(1)
    assert loss() < before


def test_resume_continues_exactly_where_it_stopped(prepared, tmp_path):
    straight = Trainer(tiny_config(prepared, tmp_path / "a", steps=4), progress=False)
    straight.fit()
    first = Trainer(tiny_config(prepared, tmp_path / "b", steps=2), progress=False)
    first.fit()
    assert first.step == 2
    resumed = Trainer(tiny_config(prepared, tmp_path / "b", steps=4), resume=True, progress=False)
    assert resumed.step == 2 and len(resumed.history) == 1
    resumed.fit()
    a, b = load_file(tmp_path / "a" / "last.safetensors"), load_file(tmp_path / "b" / "last.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    history = [json.loads(line) for line in (tmp_path / "b" / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [2, 4]
    model = load_checkpoint(tmp_path / "b" / "best.safetensors")
    assert model.card.config.hidden_size == 16


def test_expression_model_trains_with_landmark_features(prepared, tmp_path):
    cfg = tiny_config(prepared, tmp_path / "run", steps=1, model={**TINY["model"], "expression": True})
    trainer = Trainer(cfg, progress=False)
    frames, expr, labels = trainer.sampler.batch(0)
    assert expr.shape == (4, 4, trainer.model.card.config.expression_size)
    assert np.isfinite(expr).all()
    trainer.fit()
    assert load_checkpoint(tmp_path / "run" / "last.safetensors").card.config.expression_size == expr.shape[-1]


def test_no_fakes_and_no_self_blending_is_a_clear_error(tmp_path):
    data = make_prepared(tmp_path / "reals", reals=4, fakes=0)
    with pytest.raises(DatasetError, match="no fakes and self-blending is off"):
        Trainer(tiny_config(data, tmp_path / "run", sbi={"enabled": False}), progress=False)
    trainer = Trainer(tiny_config(data, tmp_path / "run2"), progress=False)  # real-only + SBI is fine
    assert sorted(trainer.sampler.batch(3)[2].tolist()) == [0, 0, 1, 1]


def test_command_line_settings_override_the_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {backbone: mobilenet_v2, hidden_size: 64}\nlr: 0.1\n")
    cfg = load_config(path, ["model.expression=true", "pretrained=false", "fake_mix={sbi: 1.0}"], steps=7)
    assert cfg.model.expression and cfg.model.hidden_size == 64 and cfg.pretrained is False
    assert cfg.fake_mix == {"sbi": 1.0} and cfg.steps == 7 and cfg.lr == 0.1
    with pytest.raises(ValueError, match="KEY=VALUE"):
        load_config(path, ["expression"])


def test_resume_refuses_a_different_model(prepared, tmp_path):
    Trainer(tiny_config(prepared, tmp_path / "run", steps=1), progress=False).fit()
    changed = tiny_config(prepared, tmp_path / "run", steps=2, model={**TINY["model"], "hidden_size": 8})
    with pytest.raises(ValueError, match="cannot resume"):
        Trainer(changed, resume=True, progress=False)
    assert load_config(None, lr="1e-4").lr == 1e-4  # YAML's 1e-4 (a string) is still a number


def test_weight_average_is_the_mean_with_batchnorm_measured_for_it():
    from streamdetect.training.averaging import BN_BATCHES, WeightAverage

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    average = WeightAverage(model)  # holds the weights as they are now, count 0
    for value in (1.0, 2.0, 6.0):
        torch.nn.init.constant_(model[0].weight, value)
        average.update(model)
    x = torch.randn(BN_BATCHES, 8, 3)
    averaged = average.averaged_model(model, lambda i: (x[i],))
    torch.testing.assert_close(averaged[0].weight, torch.full((3, 3), 3.0))
    with torch.no_grad():
        hidden = averaged[0](x.reshape(-1, 3))
    torch.testing.assert_close(averaged[1].running_mean, hidden.mean(0))  # all batches equally, not the last
    assert not averaged.training and averaged[1].momentum == model[1].momentum == 0.1  # restored; original untouched


def test_weight_average_resumes_exactly_after_a_crash(prepared, tmp_path):
    def config(out):
        return tiny_config(prepared, out, steps=4, swa_from=0.25)

    Trainer(config(tmp_path / "a"), progress=False).fit()
    crashing = Trainer(config(tmp_path / "b"), progress=False)
    step = crashing.train_step

    def killed_at_3(i):
        if i == 3:
            raise RuntimeError("killed")
        return step(i)

    crashing.train_step = killed_at_3
    with pytest.raises(RuntimeError, match="killed"):
        crashing.fit()
    assert not (tmp_path / "b" / "swa.safetensors").exists()
    Trainer(config(tmp_path / "b"), resume=True, progress=False).fit()
    a, b = load_file(tmp_path / "a" / "swa.safetensors"), load_file(tmp_path / "b" / "swa.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    last = load_file(tmp_path / "a" / "last.safetensors")
    assert any(not torch.allclose(a[k], last[k]) for k in a if k.endswith("weight"))  # an average, not the last
    assert load_checkpoint(tmp_path / "a" / "swa.safetensors").card.config == load_checkpoint(
        tmp_path / "a" / "last.safetensors").card.config
    assert sorted(p.name for p in (tmp_path / "a").glob("swa-step-*")) == ["swa-step-4.safetensors"]


def test_weight_average_start_must_be_a_fraction(tmp_path):
    with pytest.raises(ValueError, match="swa_from must be a fraction"):
        load_config(None, swa_from=1.5)


def test_resuming_past_the_average_start_without_one_says_so(prepared, tmp_path, caplog):
    Trainer(tiny_config(prepared, tmp_path / "run", steps=2), progress=False).fit()
    with caplog.at_level("WARNING"):
        resumed = Trainer(tiny_config(prepared, tmp_path / "run", steps=4, swa_from=0.25), resume=True,
                          progress=False)
    assert "no weight average for step 2" in caplog.text and resumed.average.count == 0
