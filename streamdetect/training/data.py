"""Training clips from prepared folders: identity-safe split, balanced batches, self-blended fakes, augmentation.

A batch depends only on (seed, step): resuming at step k draws exactly the batches an uninterrupted run would
have drawn, and no worker processes are needed to make that true.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamdetect.errors import DatasetError
from streamdetect.faces.expression import clip_features, mirror
from streamdetect.training.prepare import read_manifest
from streamdetect.training.readers import MediaItem, split_by_identity

_ITEM_FIELDS = {f.name for f in dataclasses.fields(MediaItem)}


@dataclass(frozen=True)
class Clip:
    """One prepared video or photo."""

    key: str
    label: int
    method: str
    family: str
    kind: str
    identity: str
    folder: str
    frames: int
    item: MediaItem

    @property
    def generator(self) -> str:
        """The generator family (fakes) or collection (reals) leave-one-family-out holds out."""
        return self.item.generator

    def held_out_by(self, holdout) -> bool:
        """True when `holdout` names this clip's generator family or its source dataset."""
        return self.item.generator in holdout or self.item.source_dataset in holdout

    @classmethod
    def from_row(cls, row: dict) -> Clip:
        item = MediaItem(**{**{k: row[k] for k in _ITEM_FIELDS if k in row},
                            "path": Path(row["path"]), "related": tuple(row.get("related", ()))})
        return cls(row["key"], int(row["label"]), row["method"], row["family"], row["kind"], row["identity"],
                   row["folder"], int(row["frames"]), item)


def crop_style(row: dict) -> str:
    """The crop style of a prepared item; folders prepared before crop styles existed are eye-levelled."""
    return row.get("crop", "aligned")


def load_clips(folders, size: int, crop: str = "box") -> list[Clip]:
    clips = []
    for folder in folders:
        for row in read_manifest(folder):
            if size not in row.get("sizes", []):
                raise DatasetError(f"{folder} has no {size} px crops (it has {row.get('sizes')}); "
                                   f"prepare it again with --sizes {size}")
            have = crop_style(row)
            if have != crop:
                raise DatasetError(f"{folder} holds {have!r} crops but the model is trained on {crop!r} crops; "
                                   f"prepare it again with --crop {crop} into a new folder, or set model.crop: {have}")
            clips.append(Clip.from_row(row))
    if not clips:
        raise DatasetError(f"no prepared items in {list(folders)}")
    return clips


def check_holdout(clips: list[Clip], holdout) -> None:
    """DatasetError listing what exists when `holdout` names a family or source no clip has (a typo)."""
    known = {c.generator for c in clips} | {c.item.source_dataset for c in clips}
    unknown = sorted(set(holdout) - known)
    if unknown:
        raise DatasetError(f"holdout names {unknown}, which no prepared item has; families and sources here: "
                           f"{', '.join(sorted(known))}")


def split_clips(clips: list[Clip], val_fraction: float, seed: int,
                holdout=()) -> tuple[list[Clip], list[Clip]]:
    """Train/validation by identity (an identity, and every video made from it, stays on one side). Clips of a
    held-out family or source dataset (`holdout`) are on neither side: they are what the run is tested on."""
    check_holdout(clips, holdout)
    clips = [c for c in clips if not c.held_out_by(holdout)]
    by_item = {id(c.item): c for c in clips}
    train, val = split_by_identity([c.item for c in clips], val_fraction=val_fraction, seed=seed)
    return [by_item[id(i)] for i in train], [by_item[id(i)] for i in val]


class ClipStore:
    """Memory-mapped crops and landmarks: reading a 20-frame window touches only those frames. At most
    `max_open` clips stay mapped (each holds a file handle; datasets have thousands of clips)."""

    def __init__(self, size: int, max_open: int = 256):
        self.size, self.max_open = size, max_open
        self._open: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def window(self, clip: Clip, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(length, S, S, 3) uint8 crops and (length, 468, 3) landmarks in crop pixels. Clips shorter than
        `length` (and photos) repeat their last frame: a still face, as a paused video shows it."""
        if clip.folder in self._open:
            self._open.move_to_end(clip.folder)
        else:
            folder = Path(clip.folder)
            self._open[clip.folder] = (np.load(folder / f"crops_{self.size}.npy", mmap_mode="r"),
                                       np.load(folder / "landmarks.npy", mmap_mode="r"))
            if len(self._open) > self.max_open:
                self._open.popitem(last=False)
        crops, marks = self._open[clip.folder]
        idx = np.minimum(np.arange(start, start + length), len(crops) - 1)
        return np.array(crops[idx]), np.array(marks[idx]) * self.size


def make_sample(store: ClipStore, clip: Clip, rng: np.random.Generator, length: int, *, start: int | None = None,
                blend: bool = False, sbi_jitter: float = 0.0, augment=None, flip: bool = False,
                expression: bool = False):
    """One training/validation sequence: (frames (T,S,S,3) uint8, expression (T,E) or None, label)."""
    from streamdetect.training import augment as aug
    from streamdetect.training.sbi import self_blend_clip

    if start is None:
        start = int(rng.integers(0, max(1, clip.frames - length + 1)))
    frames, marks = store.window(clip, start, length)
    label = clip.label
    if blend:
        frames, _ = self_blend_clip(frames, marks[..., :2], rng, frame_jitter=sbi_jitter)
        label = 1
    expr = clip_features(marks) if expression else None
    if flip:
        frames = np.ascontiguousarray(frames[:, :, ::-1])
        expr = mirror(expr) if expr is not None else None
    if augment is not None:
        frames = aug.augment_clip(frames, rng, augment)
    return frames, expr, label


MATCH_MIN = 3  # fewest reals a collection needs before its fakes are paired with them (match_reals)


class BatchSampler:
    """Balanced batches: half real, half fake; inside each class the configured pool weights."""

    def __init__(self, clips: list[Clip], config, store: ClipStore):
        from streamdetect.training.augment import AugmentConfig

        self.cfg, self.store = config, store
        raw = dict(config.augment)
        self.hflip = float(raw.pop("hflip", 0.5))  # flipped here, so the expression features flip with it
        self.augment = AugmentConfig.from_dict({**raw, "hflip": 0.0})
        self.expression = config.model.expression
        real = [c for c in clips if c.label == 0]
        fake = [c for c in clips if c.label == 1]
        self.pools = {
            0: {"video": [c for c in real if c.kind == "video"], "image": [c for c in real if c.kind == "image"]},
            1: {"sbi": list(real) if config.sbi.enabled else [],
                **{name: [c for c in fake if c.family == name] for name in ("blend", "synthesis", "animation")}},
        }
        # Inside a fake pool a clip is drawn by generator family first (then uniformly within it), so a family
        # with many clips (EchoMimic v3: 49) weighs no more than one with few: variety of generators is what
        # generalises (DF40, TalkingHeadBench), not the count of one generator's demos. Reals stay uniform over
        # clips: a collection of one clip (a single archival film) must not become a quarter of all reals.
        balance = config.balance_generators
        self.by_generator = {(label, name): _group_by_generator(clips) if label == 1 and balance else [clips]
                             for label, pools in self.pools.items() for name, clips in pools.items() if clips}
        self.weights = {0: self._weights(self.pools[0], config.real_mix), 1: self._weights(self.pools[1], config.fake_mix)}
        self.reals_of: dict = {}  # collection (source dataset) and (collection, kind) -> its training reals
        for c in real:
            for key in (c.item.source_dataset, (c.item.source_dataset, c.kind)):
                self.reals_of.setdefault(key, []).append(c)
        if not self.weights[0]:
            raise DatasetError("the training split has no real items; training needs real faces")
        if not self.weights[1]:
            raise DatasetError("the training split has no fakes and self-blending is off; add fakes or "
                               "enable sbi (self-blended fakes made from the real items)")

    @staticmethod
    def _weights(pools: dict, mix: dict) -> dict:
        w = {k: float(mix.get(k, 0.0)) for k, v in pools.items() if v and mix.get(k, 0.0) > 0}
        total = sum(w.values())
        return {k: v / total for k, v in w.items()} if total else {}

    def describe(self) -> dict:
        return {("real" if label == 0 else "fake") + "/" + name: len(self.pools[label][name])
                for label in (0, 1) for name in self.weights[label]}

    def choose(self, label: int, rng: np.random.Generator) -> tuple[Clip, str]:
        """One clip of class `label` and the pool it came from: pool by the mix weights, then (fakes, with
        balance_generators) a generator family, then a clip."""
        names = list(self.weights[label])
        pool = names[rng.choice(len(names), p=[self.weights[label][n] for n in names])]
        key = (label, pool)
        if pool == "sbi":  # SBI sources follow the real mix too (videos and photos)
            kinds = list(self.weights[0])
            key = (0, kinds[rng.choice(len(kinds), p=[self.weights[0][k] for k in kinds])])
        families = self.by_generator[key]
        candidates = families[int(rng.integers(len(families)))]
        return candidates[int(rng.integers(len(candidates)))], pool

    def matched_real(self, fake: Clip, pool: str, rng: np.random.Generator) -> Clip | None:
        """A real from the fake's own collection (same kind where there are enough), or None: a self-blended fake
        (made from a real of the mix already), or a collection with fewer than MATCH_MIN reals (one clip must
        not become a fifth of all reals)."""
        if pool == "sbi":
            return None
        for key in ((fake.item.source_dataset, fake.kind), fake.item.source_dataset):
            same = self.reals_of.get(key, [])
            if len(same) >= MATCH_MIN:
                return same[int(rng.integers(len(same)))]
        return None

    def batch(self, step: int):
        """The batch for `step`: (frames (B,T,S,S,3) uint8, expression (B,T,E) | None, labels (B,))."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, step])
        # With match_reals a fake comes first and the real after it is drawn from the fake's collection.
        labels = [(i + cfg.match_reals) % 2 for i in range(cfg.batch_size)] if cfg.balance else None
        frames, exprs, ys = [], [], []
        last_fake = None
        for i in range(cfg.batch_size):
            label = labels[i] if labels else int(rng.random() < 0.5)
            paired = self.matched_real(*last_fake, rng) if label == 0 and cfg.match_reals and last_fake else None
            clip, pool = (paired, "real") if paired else self.choose(label, rng)
            last_fake = (clip, pool) if label == 1 else None
            f, e, y = make_sample(self.store, clip, rng, cfg.seq_len, blend=pool == "sbi",
                                  sbi_jitter=cfg.sbi.frame_jitter, augment=self.augment,
                                  flip=bool(rng.random() < self.hflip), expression=self.expression)
            frames.append(f)
            exprs.append(e)
            ys.append(y)
        expr = np.stack(exprs) if self.expression else None
        return np.stack(frames), expr, np.asarray(ys, np.int64)


def _group_by_generator(clips: list[Clip]) -> list[list[Clip]]:
    groups: dict[str, list[Clip]] = {}
    for c in clips:
        groups.setdefault(c.generator, []).append(c)
    return [groups[k] for k in sorted(groups)]


def validation_samples(clips: list[Clip], store: ClipStore, length: int, *, sbi: bool, expression: bool,
                       seed: int = 1234) -> list[dict]:
    """Fixed validation sequences: the first `length` frames of every clip, and (with `sbi`) one self-blended
    copy of every real clip, made with a fixed seed so every evaluation sees the same fakes."""
    out = []
    for i, clip in enumerate(clips):
        rng = np.random.default_rng([seed, i])
        f, e, y = make_sample(store, clip, rng, length, start=0, expression=expression)
        out.append({"key": clip.key, "group": clip.method if y else "real", "family": clip.family,
                    "frames": f, "expression": e, "label": y})
        if sbi and clip.label == 0:
            f, e, y = make_sample(store, clip, rng, length, start=0, blend=True, expression=expression)
            out.append({"key": clip.key + "#sbi", "group": "SBI", "family": "blend", "frames": f,
                        "expression": e, "label": 1})
    return out
