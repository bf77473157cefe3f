"""`streamdetect train`: the paper's recipe (Adam, cross-entropy, balanced batches of face-crop sequences).

Run folder:
    config.yaml          the full configuration used
    split.json           train / validation item keys (by identity)
    last.safetensors     model + card after the latest checkpoint (step-N.safetensors: the same, named by step)
    last_state.pt        optimiser, step, history (resume reads the step-N weights it names)
    best.safetensors     the checkpoint with the best validation score so far
    swa.safetensors      with swa_from: the weights averaged over the late steps (swa-step-N: the running mean)
    history.jsonl        one line per validation: step, train loss, val loss, val AUCs (plotted: training.png)
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from streamdetect.devices import torch_device
from streamdetect.model import load_checkpoint, new_model, save_checkpoint
from streamdetect.training.averaging import WeightAverage
from streamdetect.training.config import TrainConfig
from streamdetect.training.data import BatchSampler, ClipStore, load_clips, split_clips, validation_samples

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    return torch.device(torch_device(name))  # the one device rule (streamdetect.devices)


def sequence_loss(logits: torch.Tensor, labels: torch.Tensor, which: str) -> torch.Tensor:
    """Cross-entropy on the verdict after every frame ('all': the service reads a score after every frame)
    or only after the last frame ('last': the paper)."""
    if which == "last":
        return F.cross_entropy(logits[:, -1].float(), labels)
    b, t = logits.shape[:2]
    return F.cross_entropy(logits.float().reshape(b * t, 2), labels.repeat_interleave(t))


def _lr_factor(cfg: TrainConfig, step: int) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine" and cfg.steps > cfg.warmup_steps:
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def _freeze_bn(model) -> None:
    for m in model.backbone.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        self.out = Path(cfg.out)
        self.device = pick_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        mc = cfg.model.to_config()
        clips = load_clips(cfg.data, mc.input_size, mc.crop)
        self.store = ClipStore(mc.input_size)
        self.train_clips, self.val_clips = split_clips(clips, cfg.val_fraction, cfg.split_seed, cfg.holdout)
        self.holdout_clips = [c for c in clips if c.held_out_by(cfg.holdout)]
        self.sampler = BatchSampler(self.train_clips, cfg, self.store)
        self.val = validation_samples(self.val_clips, self.store, cfg.val_seq_len, sbi=cfg.sbi.enabled,
                                      expression=cfg.model.expression)
        torch.manual_seed(cfg.seed)
        state_path = self.out / "last_state.pt"
        if resume and state_path.exists():
            state = torch.load(state_path, weights_only=True, map_location="cpu")  # tensors and numbers: safe
            self.model = load_checkpoint(self.out / f"step-{int(state['step'])}.safetensors")
            self._check_resume(mc)
        else:
            if resume:
                log.warning("%s has no checkpoint to resume; starting from step 0", self.out)
            self.model = new_model(mc, pretrained_backbone=cfg.pretrained, name=Path(cfg.out).name,
                                   training_data=", ".join(cfg.data))
            state = None
        self.model.to(self.device)
        head = [*self.model.lstm.parameters(), *self.model.head.parameters()]
        head_ids = {id(p) for p in head}
        body = [p for p in self.model.parameters() if id(p) not in head_ids]
        optimizer = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.opt = optimizer([{"params": body, "lr": cfg.lr},
                                     {"params": head, "lr": cfg.head_lr or cfg.lr}], weight_decay=cfg.weight_decay)
        self.base_lrs = [g["lr"] for g in self.opt.param_groups]
        self.amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.step, self.history, self.best = 0, [], -1.0
        self.average = WeightAverage(self.model) if cfg.swa_from is not None else None
        if state is not None:
            self.opt.load_state_dict(state["optimizer"])
            if "scaler" in state:
                self.scaler.load_state_dict(state["scaler"])
            self.step, self.best = int(state["step"]), float(state["best"])
            self.history = json.loads(state["history"])
            restored = self.average and self.average.restore(self.out / f"swa-step-{self.step}.safetensors")
            if self.average and not restored and self._averages(self.step):
                log.warning("%s has no weight average for step %d (swa_from was off?); averaging starts now",
                            self.out, self.step)
        self._write_run_files()

    def _check_resume(self, config) -> None:
        """A resumed run must be the same run: same architecture, same train/validation split."""
        if self.model.card.config != config:
            raise ValueError(f"cannot resume {self.out}: its model is {self.model.card.config}, the config asks for "
                             f"{config}; use a new --out")
        split = json.loads((self.out / "split.json").read_text())
        if split["train"] != [c.key for c in self.train_clips] or split["val"] != [c.key for c in self.val_clips]:
            raise ValueError(f"cannot resume {self.out}: the data or split settings changed since it started "
                             f"({self.out / 'split.json'}); use the same --data and split_seed, or a new --out")

    def _write_run_files(self) -> None:
        import yaml

        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(self.cfg.to_dict()))))
        (self.out / "split.json").write_text(json.dumps({
            "train": [c.key for c in self.train_clips], "val": [c.key for c in self.val_clips],
            "holdout": [c.key for c in self.holdout_clips],
            # What a held-out family is scored against: every real the run never trained on.
            "holdout_eval": [c.key for c in self.holdout_clips] + [c.key for c in self.val_clips if c.label == 0],
            "train_pools": self.sampler.describe()}, indent=1))

    # -- one optimisation step -------------------------------------------------------------------------------
    def train_step(self, step: int) -> float:
        cfg = self.cfg
        frames, expr, labels = self.sampler.batch(step)
        torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout masks depend on the step only: exact resume
        for group, base in zip(self.opt.param_groups, self.base_lrs):
            group["lr"] = base * _lr_factor(cfg, step)
        self.model.train()
        if cfg.freeze_bn:
            _freeze_bn(self.model)
        x = torch.from_numpy(frames).to(self.device)
        e = torch.from_numpy(expr).to(self.device) if expr is not None else None
        y = torch.from_numpy(labels).to(self.device)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            loss = sequence_loss(self.model(x, e), y, cfg.loss)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return float(loss.detach())

    # -- validation ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict:
        from streamdetect.training.metrics import roc_auc

        self.model.eval()
        logits = []
        for i in range(0, len(self.val), 8):
            chunk = self.val[i:i + 8]
            x = torch.from_numpy(np.stack([s["frames"] for s in chunk])).to(self.device)
            e = None
            if self.cfg.model.expression:
                e = torch.from_numpy(np.stack([s["expression"] for s in chunk])).to(self.device)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                logits.append(self.model(x, e).float().cpu())
        logits = torch.cat(logits)  # (N, T, 2)
        labels = torch.tensor([s["label"] for s in self.val])
        loss = float(sequence_loss(logits, labels, self.cfg.loss))
        p = torch.softmax(logits, -1)[..., 1].mean(1).numpy()  # video score: mean per-frame p_fake
        y = labels.numpy()
        groups = np.array([s["group"] for s in self.val])
        real = groups == "real"
        result = {"val_loss": round(loss, 4)}
        dataset_fakes = (y == 1) & (groups != "SBI")
        for name, mask in (("val_auc", dataset_fakes), ("val_auc_sbi", groups == "SBI")):
            if mask.any() and real.any():
                result[name] = round(float(roc_auc(y[real | mask], p[real | mask])), 4)
        return result

    def score(self, result: dict) -> float:
        """Model selection: mean of the validation AUCs (dataset fakes and self-blended fakes)."""
        aucs = [v for k, v in result.items() if k.startswith("val_auc") and not math.isnan(v)]
        return float(np.mean(aucs)) if aucs else -float(result["val_loss"])

    def save(self, best: bool = False) -> None:
        """Weights go to step-N.safetensors first, then the state naming N replaces last_state.pt: a crash at
        any point leaves a state whose weights exist. last.safetensors is a copy for people and evaluate."""
        weights = save_checkpoint(self.model, self.out / f"step-{self.step}.safetensors")
        mean = self.out / f"swa-step-{self.step}.safetensors"
        if self.average and self.average.count:
            self.average.save(mean)
        state = {"optimizer": self.opt.state_dict(), "scaler": self.scaler.state_dict(), "step": self.step,
                 "best": self.best, "history": json.dumps(self.history)}
        tmp = self.out / "last_state.pt.partial"
        torch.save(state, tmp)
        tmp.replace(self.out / "last_state.pt")
        for old in [*self.out.glob("step-*.safetensors"), *self.out.glob("swa-step-*.safetensors")]:
            if old not in (weights, mean):
                old.unlink()
        shutil.copyfile(weights, self.out / "last.safetensors.partial")
        (self.out / "last.safetensors.partial").replace(self.out / "last.safetensors")
        if best:
            save_checkpoint(self.model, self.out / "best.safetensors")

    def _plot(self) -> None:
        from streamdetect.errors import MissingDependencyError
        from streamdetect.training.plots import plot_training_curves

        if not self.history:
            return
        try:
            plot_training_curves(self.history, self.out / "training.png", f"training: {self.out.name}")
        except MissingDependencyError as exc:  # plots are a convenience; the numbers are in history.jsonl
            log.warning("no training plot: %s", exc)

    def _averages(self, step: int) -> bool:
        """Whether the weights after `step` steps belong in the average (swa_from's share of the run is past)."""
        return step > self.cfg.swa_from * self.cfg.steps

    def _save_average(self) -> None:
        """swa.safetensors: the mean weights, with BatchNorm statistics from batches drawn after the last step."""
        def batches(i: int):
            frames, expr, _ = self.sampler.batch(self.cfg.steps + i)
            e = torch.from_numpy(expr).to(self.device) if expr is not None else None
            return torch.from_numpy(frames).to(self.device), e

        save_checkpoint(self.average.averaged_model(self.model, batches), self.out / "swa.safetensors")

    # -- the loop ----------------------------------------------------------------------------------------------
    def fit(self) -> dict:
        from streamdetect.training.progress import progress_bar

        cfg = self.cfg
        bar = progress_bar(total=cfg.steps, initial=self.step, desc="train", unit="step", enabled=self.progress)
        losses, started, seen = [], time.perf_counter(), 0
        last = {}
        while self.step < cfg.steps:
            losses.append(self.train_step(self.step))
            self.step += 1
            if self.average and self._averages(self.step):
                self.average.update(self.model)
            seen += cfg.batch_size * cfg.seq_len
            bar.update(1)
            postfix = {"loss": f"{np.mean(losses[-20:]):.3f}"}
            due_val = self.step % cfg.val_every == 0 or self.step == cfg.steps
            if due_val and self.val:
                last = {"step": self.step, "train_loss": round(float(np.mean(losses[-cfg.val_every:])), 4),
                        **self.validate(),
                        "faces_per_s": round(seen / (time.perf_counter() - started), 1)}
                self.history.append(last)
                with open(self.out / "history.jsonl", "a") as f:
                    f.write(json.dumps(last) + "\n")
                improved = self.score(last) > self.best
                if improved:
                    self.best = self.score(last)
                self.save(best=improved)
            elif self.step % cfg.checkpoint_every == 0:
                self.save()
            postfix.update({k: v for k, v in last.items() if k.startswith("val_")})
            bar.set_postfix(postfix)
        bar.close()
        self.save(best=not (self.out / "best.safetensors").exists())
        if self.average and self.average.count:
            self._save_average()
        self._plot()
        return {"steps": self.step, "history": self.history, "best_score": self.best,
                "faces_per_s": round(seen / max(1e-9, time.perf_counter() - started), 1) if seen else None}


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    return Trainer(cfg, resume=resume, progress=progress).fit()
