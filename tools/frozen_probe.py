"""Frozen ImageNet features + a linear probe, against the shipped model, on rounds neither has seen.

    python tools/frozen_probe.py --config examples/train_default.yaml \
        --test round6=prepared/round6_swap,prepared/round6_lipsync,prepared/round6_anim round7=prepared/round7 ...

The question (README "Model quality", frozen features): does an encoder never fine-tuned on faces — the shipped
EfficientNet-Lite0 @112 with its ImageNet weights, frozen — with a logistic-regression head generalise to unseen
generators better than the fine-tuned shipped model, given the same training data? The probe sees the config's
data and identity split, 24 frames per clip, one self-blended copy of every real clip, every crop clean and once
through the config's augmentation; sample weights reproduce the config's real / fake mixes. C is picked on the
validation identities. Candidates (taps of the frozen encoder, global-average-pooled):
  head    the final 1280 features (v3's graph: backbone -> FC)
  stages  every stage's last block (16 .. 320 channels) + head
  stages+std  the same + each stage's per-channel spatial standard deviation
Each test round: video AUC of scan's score (mean calibrated p_fake), paired bootstrap vs the baseline checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from streamdetect.model.backbones import IMAGENET_MEAN, IMAGENET_STD, build_backbone
from streamdetect.model.detector import Normalize
from streamdetect.training import metrics as M
from streamdetect.training.augment import AugmentConfig, augment_clip
from streamdetect.training.config import load_config
from streamdetect.training.data import BatchSampler, load_clips, split_clips
from streamdetect.training.progress import progress_bar
from streamdetect.training.sbi import self_blend_clip

FRAMES = 24
GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
CANDIDATES = {"head": ("head",), "stages": ("gap", "head"), "stages+std": ("gap", "std", "head")}


class FrozenTaps(torch.nn.Module):
    """ImageNet EfficientNet-Lite0, frozen; pooled features at the end of every stage and after the head."""

    def __init__(self, size: int = 112):
        super().__init__()
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self.trunk = build_backbone("efficientnet_lite0", size, pretrained=True).eval()
        net = self.trunk.trunk.m
        self._out: list[torch.Tensor] = []
        with torch.no_grad():  # a stage ends where the next block changes the channel count
            chans = []
            hooks = [b.register_forward_hook(lambda _m, _i, o: chans.append(o.shape[1])) for b in net._blocks]
            net.extract_features(torch.zeros(1, 3, size, size))
            [h.remove() for h in hooks]
        ends = [i for i in range(len(chans)) if i == len(chans) - 1 or chans[i + 1] != chans[i]]
        for i in ends:
            net._blocks[i].register_forward_hook(lambda _m, _i, o: self._out.append(o))

    @torch.no_grad()
    def forward(self, crops: torch.Tensor) -> dict[str, np.ndarray]:
        self._out.clear()
        head = self.trunk(self.normalize(crops))
        return {"gap": torch.cat([o.mean((2, 3)) for o in self._out], 1).numpy(),
                "std": torch.cat([o.std((2, 3)) for o in self._out], 1).numpy(), "head": head.numpy()}


def encode(taps: FrozenTaps, crops: np.ndarray) -> dict[str, np.ndarray]:
    parts = [taps(torch.from_numpy(np.ascontiguousarray(crops[i:i + 64]))) for i in range(0, len(crops), 64)]
    return {k: np.concatenate([p[k] for p in parts]).astype(np.float32) for k in parts[0]}


def even(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def training_rows(taps, clips, cfg, seed: int = 0):
    """Features, labels and mix weights of the probe's training frames (clean + augmented, SBI from reals)."""
    aug = AugmentConfig.from_dict(dict(cfg.augment))
    feats, labels, pools = [], [], []
    for i, clip in enumerate(progress_bar(clips, desc="train features", unit="clip")):
        rng = np.random.default_rng([seed, i])
        crops = np.load(Path(clip.folder) / f"crops_{cfg.model.input_size}.npy", mmap_mode="r")
        idx = even(len(crops), FRAMES)
        frames = np.array(crops[idx])
        # pools as the trainer's BatchSampler names them; a pool the mix does not name (synthesis: StyleGAN2 photos)
        # gets weight 0, as in training
        versions = [(frames, clip.label, clip.kind if clip.label == 0 else clip.family)]
        if clip.label == 0 and cfg.sbi.enabled:
            marks = np.load(Path(clip.folder) / "landmarks.npy", mmap_mode="r")[idx] * cfg.model.input_size
            versions.append((self_blend_clip(frames, marks[..., :2], rng)[0], 1, "sbi"))
        for x, label, pool in versions:
            for y in (x, augment_clip(x, rng, aug)):
                f = encode(taps, y)
                feats.append(f), labels.append(np.full(len(y), label)), pools.append([pool] * len(y))
    feats = {k: np.concatenate([f[k] for f in feats]) for k in feats[0]}
    labels, pools = np.concatenate(labels), np.concatenate(pools)
    weights = np.zeros(len(pools))
    for label, mix in ((0, cfg.real_mix), (1, cfg.fake_mix)):  # the trainer's rule: half per class, then its mix
        present = {p: [True] for p in set(pools[labels == label])}
        for p, share in BatchSampler._weights(present, mix).items():  # a pool's frames share its weight equally
            weights[(pools == p) & (labels == label)] = 0.5 * share / ((pools == p) & (labels == label)).sum()
    keep = weights > 0
    return {k: v[keep] for k, v in feats.items()}, labels[keep], weights[keep] * keep.sum()


def clip_rows(taps, clips, size: int, max_frames: int):
    """Per-clip features of up to `max_frames` frames (evenly spaced when fewer are asked than exist)."""
    out = []
    for clip in progress_bar(clips, desc="clip features", unit="clip"):
        crops = np.load(Path(clip.folder) / f"crops_{size}.npy", mmap_mode="r")
        out.append((clip.key, clip.label, encode(taps, np.array(crops[even(len(crops), max_frames)]))))
    return sorted(out, key=lambda r: r[0])


def design(feats: dict, candidate: str) -> np.ndarray:
    return np.concatenate([feats[k] for k in CANDIDATES[candidate]], axis=1)


class Probe:
    """Standardised features -> L2 logistic regression (LBFGS), the logit of fake."""

    def __init__(self, x: np.ndarray, y: np.ndarray, w: np.ndarray, c: float):
        self.mu, self.sd = x.mean(0), x.std(0) + 1e-6
        xt = torch.from_numpy((x - self.mu) / self.sd)
        yt, wt = torch.from_numpy(y.astype(np.float32)), torch.from_numpy(w.astype(np.float32))
        self.w = torch.zeros(x.shape[1], requires_grad=True)
        self.b = torch.zeros(1, requires_grad=True)
        opt = torch.optim.LBFGS([self.w, self.b], max_iter=300, line_search_fn="strong_wolfe")
        lam = 1.0 / (c * len(y))

        def loss():
            opt.zero_grad()
            z = xt @ self.w + self.b
            v = (wt * torch.nn.functional.binary_cross_entropy_with_logits(z, yt, reduction="none")).mean()
            v = v + 0.5 * lam * (self.w ** 2).sum()
            v.backward()
            return v

        opt.step(loss)

    @torch.no_grad()
    def logits(self, x: np.ndarray) -> np.ndarray:
        return (torch.from_numpy((x - self.mu) / self.sd) @ self.w + self.b).numpy()


def scan_auc(rows, frame_logits) -> tuple[np.ndarray, np.ndarray, float]:
    """Labels and scan scores (mean calibrated p_fake) per clip; the temperature is fitted on these frames."""
    y = np.array([r[1] for r in rows])
    temperature = M.fit_temperature(np.concatenate(frame_logits),
                                    np.concatenate([np.full(len(f), r[1]) for f, r in zip(frame_logits, rows)]))
    s = np.array([M.apply_temperature(f, temperature).mean() for f in frame_logits])
    return y, s, temperature


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="examples/train_default.yaml", help="data, split, mixes and augmentation")
    ap.add_argument("--data", nargs="*", help="training folders (default: the config's)")
    ap.add_argument("--test", nargs="+", required=True, help="NAME=FOLDER[,FOLDER...] rounds no model trained on")
    ap.add_argument("--baseline", default="streamdetect/weights/default.safetensors")
    ap.add_argument("--cache", default="runs/frozen_probe", help="features are cached here (.npz)")
    ap.add_argument("--reps", type=int, default=2000)
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = load_config(args.config)
    size = cfg.model.input_size
    taps = FrozenTaps(size)
    clips = load_clips(args.data or cfg.data, size, cfg.model.crop)
    train, val = split_clips(clips, cfg.val_fraction, cfg.split_seed, cfg.holdout)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    feats, y, w = cached_train(cache / "train.npz", lambda: training_rows(taps, train, cfg))
    val_rows = cached_rows(cache / "val.npz", lambda: clip_rows(taps, val, size, FRAMES))
    print(f"{len(train)} training clips -> {len(y)} frames ({int(y.sum())} fake); {len(val)} validation clips")

    probes = {}
    for cand in CANDIDATES:
        x = design(feats, cand)
        best = None
        for c in GRID:
            p = Probe(x, y, w, c)
            vy, vs, _ = scan_auc(val_rows, [p.logits(design(f, cand)) for _, _, f in val_rows])
            auc = M.roc_auc(vy, vs)
            if best is None or auc > best[0]:
                best = (auc, c, p)
        probes[cand] = best[2]
        print(f"{cand}: {x.shape[1]} features, C = {best[1]} (validation video AUC {best[0]:.3f})")

    from compare_models import scores_of  # noqa: E402 (tools/ is on sys.path when run as a script)

    for spec in args.test:
        name, folders = spec.split("=", 1)
        folders = folders.split(",")
        keys, ty, base = scores_of(args.baseline, folders, "scan")
        rows = cached_rows(cache / f"test_{name}.npz", lambda: clip_rows(taps, load_clips(folders, size, cfg.model.crop),
                                                                     size, 150))
        assert [r[0] for r in rows] == keys, "the baseline and the probe must score the same clips"
        mixed = []
        line = [f"{name} ({int(ty.sum())} fakes / {int((ty == 0).sum())} reals): baseline {M.roc_auc(ty, base):.3f}"]
        for cand, p in probes.items():
            _, s, _ = scan_auc(rows, [p.logits(design(f, cand)) for _, _, f in rows])
            d = M.paired_auc_difference(ty, base, s, reps=args.reps)
            line.append(f"{cand} {M.roc_auc(ty, s):.3f} ({d['diff']:+.3f}, {d['ci'][0]:+.3f} to {d['ci'][1]:+.3f})")
            mixed.append(f"{cand} {M.roc_auc(ty, (s + base) / 2):.3f}")
        print("; ".join(line) + "\n    averaged with the baseline's score: " + ", ".join(mixed), flush=True)


def cached_train(path: Path, make):
    """Compute once, then read back (.npz): feature extraction is the slow part and the probes are cheap."""
    if not path.exists():
        feats, y, w = make()
        np.savez(path, y=y, w=w, **feats)
    z = np.load(path)
    return {k: z[k] for k in ("gap", "std", "head")}, z["y"], z["w"]


def cached_rows(path: Path, make):
    """Per-clip rows (key, label, features) stored flat with each clip's frame count."""
    if not path.exists():
        rows = make()
        np.savez(path, keys=np.array([r[0] for r in rows]), labels=np.array([r[1] for r in rows]),
                 counts=np.array([len(r[2]["head"]) for r in rows]),
                 **{k: np.concatenate([r[2][k] for r in rows]) for k in ("gap", "std", "head")})
    z = np.load(path)
    ends = np.cumsum(z["counts"])
    return [(str(key), int(label), {k: z[k][e - n:e] for k in ("gap", "std", "head")})
            for key, label, n, e in zip(z["keys"], z["labels"], z["counts"], ends)]


if __name__ == "__main__":
    main()
