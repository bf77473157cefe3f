"""A tiny prepared dataset written straight in `streamdetect prepare`'s format, for training/evaluation tests.

Real items are drawn faces; fakes get a brighter, smoother face region (a seam a model can learn in a few
steps). Landmarks are points spread over the face ellipse, in crop units, as prepare stores them.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from streamdetect.training.readers import MediaItem, method_family


def draw_face(rng: np.random.Generator, size: int = 112, fake: bool = False) -> np.ndarray:
    img = rng.integers(40, 90, (size, size, 3), dtype=np.uint8)
    c, axes = (size // 2, size // 2), (size // 4, size // 3)
    skin = (200, 150, 120) if not fake else (225, 175, 150)
    cv2.ellipse(img, c, axes, 0, 0, 360, skin, -1)
    noise = rng.integers(-12, 12, img.shape)
    if fake:  # blended faces are smoother than their surroundings
        noise[size // 6:5 * size // 6, size // 4:3 * size // 4] //= 4
    img = np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)
    for dx in (-size // 9, size // 9):
        cv2.circle(img, (c[0] + dx, c[1] - size // 10), 3, (30, 30, 30), -1)
    cv2.ellipse(img, (c[0], c[1] + size // 6), (size // 10, 3), 0, 0, 360, (120, 40, 40), -1)
    return img


def face_landmarks(rng: np.random.Generator, n: int = 468) -> np.ndarray:
    """(n, 3) points inside the drawn face ellipse, in crop units (0..1)."""
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = np.sqrt(rng.uniform(0, 0.9, n))
    xy = np.stack([0.5 + radius * np.cos(angle) / 4, 0.5 + radius * np.sin(angle) / 3], axis=1)
    return np.concatenate([xy, rng.normal(0, 0.01, (n, 1))], axis=1).astype(np.float32)


def write_item(out: Path, key: str, item: MediaItem, frames: int, rng: np.random.Generator, size: int = 112) -> None:
    folder = out / "items" / key
    folder.mkdir(parents=True)
    crops = np.stack([draw_face(rng, size, fake=item.label == 1) for _ in range(frames)])
    base = face_landmarks(rng)
    marks = np.stack([base + rng.normal(0, 0.003, base.shape).astype(np.float32) for _ in range(frames)])
    np.save(folder / f"crops_{size}.npy", crops)
    np.save(folder / "landmarks.npy", marks.astype(np.float32))
    np.save(folder / "frames.npy", np.arange(frames, dtype=np.int32))
    meta = {"key": key, "path": str(item.path), "label": item.label, "method": item.method,
            "source_dataset": item.source_dataset, "identity": item.identity, "related": list(item.related),
            "split": item.split, "kind": item.kind, "family": item.family, "frames": frames, "sizes": [size],
            "sampling": "first", "crop": "box", "generator": item.generator}
    (folder / "meta.json").write_text(json.dumps(meta))


def make_prepared(out: Path, reals: int = 6, fakes: int = 6, frames: int = 24, images: int = 2, seed: int = 0) -> Path:
    """`reals` + `fakes` video items (one identity each, fakes named after their real) and `images` photos."""
    from streamdetect.training.prepare import write_manifest

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "prepare.json").write_text(json.dumps({"root": str(out), "layout": "synthetic"}))
    for i in range(reals):
        item = MediaItem(Path(f"real/{i}.mp4"), 0, "original", "synthetic", f"id{i}")
        write_item(out, f"real_{i}", item, frames, rng)
    for i in range(fakes):
        method = "Swap" if i % 2 else "Reenact"
        item = MediaItem(Path(f"fake/{i}.mp4"), 1, method, "synthetic", f"id{i % reals}",
                         family=method_family(method, 1))
        write_item(out, f"fake_{i}", item, frames, rng)
    for i in range(images):
        item = MediaItem(Path(f"real/p{i}.jpg"), 0, "original", "synthetic", f"photo{i}", kind="image")
        write_item(out, f"photo_{i}", item, 1, rng)
    write_manifest(out)
    return out
