"""MesoNet, the public peer issue 9 measured on its held-out sets, on our leave-one-family-out clips.

Which detector transfers to which unseen generators: each LOFO fold's own model (trained without those families)
against the four MesoNet files (Afchar et al. 2018, trained on their own deepfake/Face2Face data, never on ours),
scored on the same held-out fakes and the same unseen reals of the same kind, with lofo's bootstrap intervals.
Video score: mean p_fake over the prepared frames (`streamdetect scan`'s whole-video protocol).

Needs: the authors' Keras weights (Apache-2.0; `weights/*.h5` of github.com/DariusAf/MesoNet), h5py to read them
(`pip install h5py`), finished `streamdetect lofo` fold runs, and prepared folders with 112 and 224 px crops
(MesoNet reads 256 px: the 224 crop is resized), e.g. a few frames per video spread over it:
    streamdetect prepare ../shared/data prepared/shared_e8 --sizes 112,224 --frames 8 --sampling even
    python tools/peer_mesonet.py --weights MesoNet/weights --lofo runs/lofo prepared/shared_e8 prepared/round2_e8

With --round instead of --lofo it scores one checkpoint (e.g. the shipped model) against the per-frame average of it
and MesoNet (equal weights; MesoNet = the mean p_fake of the four files) on whole rounds it never trained on, with
the paired bootstrap of the AUC difference:
    python tools/peer_mesonet.py --weights MesoNet/weights --model streamdetect/weights/default.safetensors \
        --round round7=prepared/e8/round7 --round round6=prepared/e8/round6_swap,prepared/e8/round6_anim
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamdetect.model import load_checkpoint
from streamdetect.training.data import load_clips
from streamdetect.training.evaluate import Scored, score_clip
from streamdetect.training.lofo import ALL, family_aucs
from streamdetect.training.metrics import apply_temperature, paired_auc_difference, roc_auc
from streamdetect.training.progress import progress_bar

FILES = ("Meso4_DF", "Meso4_F2F", "MesoInception_DF", "MesoInception_F2F")


def _conv(cin: int, cout: int, k: int, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation)  # Keras padding="same"


class _Inception(nn.Module):
    def __init__(self, cin: int, a: int, b: int, c: int, d: int):
        super().__init__()
        self.one = _conv(cin, a, 1)
        self.branches = nn.ModuleList([nn.Sequential(_conv(cin, n, 1), nn.ReLU(), _conv(n, n, 3, dil), nn.ReLU())
                                       for n, dil in ((b, 1), (c, 2), (d, 3))])

    def convs(self) -> list[nn.Conv2d]:  # in Keras creation order (conv2d_1, conv2d_2, ...)
        return [self.one, *(m for br in self.branches for m in br if isinstance(m, nn.Conv2d))]

    def forward(self, x):
        return torch.cat([F.relu(self.one(x)), *(br(x) for br in self.branches)], 1)


class MesoNet(nn.Module):
    """Meso4 or MesoInception4 as in the authors' classifiers.py. Input (N, 3, 256, 256) RGB in [0, 1]."""

    def __init__(self, inception: bool):
        super().__init__()
        self.inception = inception
        if inception:
            self.l1, self.l2, c1, c2 = _Inception(3, 1, 4, 4, 2), _Inception(11, 2, 4, 4, 2), 11, 12
        else:
            self.l1, self.l2, c1, c2 = _conv(3, 8, 3), _conv(8, 8, 5), 8, 8
        self.l3, self.l4 = _conv(c2, 16, 5), _conv(16, 16, 5)
        self.bns = nn.ModuleList([nn.BatchNorm2d(c, eps=1e-3) for c in (c1, c2, 16, 16)])  # Keras eps
        self.fc1, self.fc2 = nn.Linear(1024, 16), nn.Linear(16, 1)

    def forward(self, x):
        """-> logit of "fake" (the Keras model's sigmoid output is P(real): class 1 of df/ and real/ folders)."""
        for i, (layer, bn, pool) in enumerate(zip((self.l1, self.l2, self.l3, self.l4), self.bns, (2, 2, 2, 4))):
            y = layer(x)
            x = F.max_pool2d(bn(y if self.inception and i < 2 else F.relu(y)), pool)
        x = x.permute(0, 2, 3, 1).flatten(1)  # Keras flattens channels-last
        return -self.fc2(F.leaky_relu(self.fc1(x), 0.1)).squeeze(1)

    def load_keras(self, path: Path) -> MesoNet:
        try:
            import h5py
        except ImportError:
            sys.exit("reading MesoNet's Keras weights needs h5py: pip install h5py")
        with h5py.File(path, "r") as f:
            def layers(prefix):  # Keras numbers layers in creation order: sort conv2d_10 after conv2d_9
                names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
                names = sorted((n for n in names if n.rsplit("_", 1)[0] == prefix), key=lambda n: int(n.rsplit("_", 1)[1]))
                return [[np.array(f[n][w]) for w in f[n].attrs["weight_names"]] for n in names]

            convs = [*self.l1.convs(), *self.l2.convs()] if self.inception else [self.l1, self.l2]
            convs += [self.l3, self.l4]
            t = torch.from_numpy
            for m, (k, b) in zip(convs, layers("conv2d"), strict=True):
                m.weight.data, m.bias.data = t(k).permute(3, 2, 0, 1).contiguous(), t(b)
            for m, (g, b, mean, var) in zip(self.bns, layers("batch_normalization"), strict=True):
                m.weight.data, m.bias.data, m.running_mean.data, m.running_var.data = t(g), t(b), t(mean), t(var)
            for m, (k, b) in zip((self.fc1, self.fc2), layers("dense"), strict=True):
                m.weight.data, m.bias.data = t(k.T.copy()), t(b)
        return self.eval()


@torch.no_grad()
def meso_logits(models: dict[str, MesoNet], crops_224: np.ndarray) -> dict[str, np.ndarray]:
    x = np.stack([cv2.resize(c, (256, 256), interpolation=cv2.INTER_LINEAR) for c in crops_224])
    x = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    return {name: m(x).numpy() for name, m in models.items()}


def lofo_report(mesos: dict[str, MesoNet], lofo: Path, prepared: list[str], out_json: Path | None) -> None:
    clips = {c.key: c for c in load_clips(prepared, 224)}
    folds = sorted(p for p in lofo.iterdir() if (p / "split.json").is_file())
    if not folds:
        sys.exit(f"{lofo} holds no fold runs (folders with split.json); run `streamdetect lofo` first")
    results = {}
    for fold in folds:
        model = load_checkpoint(fold / "last.safetensors").eval()
        keys = [k for k in json.loads((fold / "split.json").read_text())["holdout_eval"] if k in clips]
        scored = {name: [] for name in ("ours", *FILES)}
        for key in progress_bar(keys, desc=fold.name, unit="clip"):
            c, folder = clips[key], Path(clips[key].folder)
            size = model.card.config.input_size
            ours, by_length = score_clip(model, np.load(folder / f"crops_{size}.npy"),
                                         np.load(folder / "landmarks.npy") * size, window=20)  # lofo's scoring path
            scored["ours"].append(Scored(key, c.label, c.method if c.label else "real", c.family, c.kind, ours,
                                         by_length))
            for name, z in meso_logits(mesos, np.load(folder / "crops_224.npy")).items():
                scored[name].append(Scored(key, c.label, c.method if c.label else "real", c.family, c.kind, z, {}))
        # Fewer frames than lofo's min_frames: family_aucs' video score is then the mean p_fake (scan's).
        results[fold.name] = {name: family_aucs(s) for name, s in scored.items()}
    print("| fold | family | fakes | reals | ours (fold model) | " + " | ".join(FILES) + " |")
    print("|---|---|---:|---:|---:|" + "---:|" * len(FILES))
    for fold, by_model in results.items():
        for fam in [*sorted(f for f in by_model["ours"] if f != ALL), ALL]:
            row = by_model["ours"][fam]
            cells = [f"{by_model[m][fam]['auc']:.2f}" for m in ("ours", *FILES)]
            print(f"| {fold} | {fam} | {row['n_fake']} | {row['n_real']} | " + " | ".join(cells) + " |")
    if out_json:
        out_json.write_text(json.dumps(results, indent=1))


def rounds_report(mesos: dict[str, MesoNet], checkpoint: Path, rounds: list[str]) -> None:
    """The model alone vs its per-frame average with MesoNet; video score = mean p_fake (scan's pooling)."""
    model = load_checkpoint(checkpoint).eval()
    size, temperature = model.card.config.input_size, model.card.temperature
    columns = ("model", "MesoNet", "average", *FILES)
    print("| round | fakes / reals | " + " | ".join(columns) + " | average − model (95 % CI) |")
    print("|---|---:|" + "---:|" * len(columns) + "---:|")
    for spec in rounds:
        name, _, folders = spec.partition("=")
        if not folders:
            sys.exit(f"--round {spec!r}: write NAME=PREPARED[,PREPARED...]")
        labels, video = [], {k: [] for k in columns}
        for c in progress_bar(load_clips(folders.split(","), 224), desc=name, unit="clip"):
            folder = Path(c.folder)
            z, _ = score_clip(model, np.load(folder / f"crops_{size}.npy"), np.load(folder / "landmarks.npy") * size,
                              window=20)
            frames = {"model": apply_temperature(z, temperature)}
            meso = meso_logits(mesos, np.load(folder / "crops_224.npy"))
            frames |= {n: apply_temperature(z, 1.0) for n, z in meso.items()}
            frames["MesoNet"] = np.mean([frames[n] for n in FILES], axis=0)
            frames["average"] = 0.5 * frames["model"] + 0.5 * frames["MesoNet"]
            labels.append(c.label)
            for k in columns:
                video[k].append(float(frames[k].mean()))
        d = paired_auc_difference(labels, video["model"], video["average"])
        cells = " | ".join(f"{roc_auc(labels, video[k]):.3f}" for k in columns)
        print(f"| {name} | {sum(labels)} / {len(labels) - sum(labels)} | {cells} | "
              f"{d['diff']:+.3f} ({d['ci'][0]:+.3f} to {d['ci'][1]:+.3f}) |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prepared", nargs="*", help="with --lofo: prepared folders with 112 and 224 px crops")
    ap.add_argument("--weights", required=True, type=Path, help="folder with Meso4_DF.h5 ... MesoInception_F2F.h5")
    ap.add_argument("--lofo", type=Path, help="a `streamdetect lofo` output folder (its fold runs)")
    ap.add_argument("--json", type=Path, help="with --lofo: also write the table as JSON here")
    ap.add_argument("--model", type=Path, help="with --round: the checkpoint to compare and average with MesoNet")
    ap.add_argument("--round", action="append", default=[], metavar="NAME=DIR[,DIR]",
                    help="a round of prepared folders (112 and 224 px crops) the model never trained on; repeatable")
    args = ap.parse_args(argv)
    if bool(args.lofo) == bool(args.round):
        ap.error("give either --lofo with prepared folders, or --model with one or more --round")
    if args.round and not args.model:
        ap.error("--round needs --model CHECKPOINT")
    missing = [f"{n}.h5" for n in FILES if not (args.weights / f"{n}.h5").is_file()]
    if missing:
        sys.exit(f"{args.weights} lacks {', '.join(missing)}: take them from weights/ of github.com/DariusAf/MesoNet")
    torch.set_num_threads(2)
    mesos = {n: MesoNet("Inception" in n).load_keras(args.weights / f"{n}.h5") for n in FILES}
    with torch.no_grad():
        if args.lofo:
            lofo_report(mesos, args.lofo, args.prepared, args.json)
        else:
            rounds_report(mesos, args.model, args.round)
    return 0


if __name__ == "__main__":
    sys.exit(main())
