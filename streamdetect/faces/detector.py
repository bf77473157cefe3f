"""MediaPipe face detection through the Tasks API, offline, with the model files bundled in the package.

BlazeFace's full-range model sees a 192x192 view of the frame, so a 40 px face in 1280x720 is ~6 px to it and
is missed. With `tiles=N` the frame is also cut into an N x N grid of overlapping tiles, each detected on its
own, and the results merged by non-maximum suppression: small faces become 2-3x larger to the model.
"""

from __future__ import annotations

import contextlib
import os
from importlib.resources import files
from typing import Protocol

import numpy as np

from streamdetect.faces.types import Box, Detection

MODELS = {
    "full_range": "face_detection_full_range_sparse.tflite",  # faces up to ~5 m: webcams, broadcasts
    "short_range": "face_detection_short_range.tflite",  # faces within ~2 m: selfie/video-call framing
}


class FaceDetector(Protocol):
    def detect(self, rgb: np.ndarray, tiled: bool = True) -> list[Detection]: ...

    def close(self) -> None: ...


def model_path(name: str) -> str:
    if name not in MODELS:
        raise ValueError(f"unknown face detection model {name!r}; choose one of {', '.join(MODELS)}")
    return str(files("streamdetect.faces") / "models" / MODELS[name])


class MediaPipeFaceDetector:
    def __init__(self, model: str = "full_range", min_score: float = 0.5, tiles: int | str = "auto",
                 tile_overlap: float = 0.25, nms_iou: float = 0.4):
        os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe/LiteRT log every model load at INFO
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=model_path(model)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=min_score,
            min_suppression_threshold=0.3,
        )
        with _quiet_stderr():  # LiteRT prints dozens of INFO/"Sparsity" lines per model load from C++
            self._detector = vision.FaceDetector.create_from_options(options)
        self.tiles, self.tile_overlap, self.nms_iou = tiles, tile_overlap, nms_iou

    def detect(self, rgb: np.ndarray, tiled: bool = True) -> list[Detection]:
        """All faces in an RGB uint8 frame, boxes and keypoints in frame pixels, highest score first.
        tiled=False skips the (costly) tiled pass even when tiling is configured."""
        h, w = rgb.shape[:2]
        found = self._detect_region(rgb, 0, 0)
        grid = (2 if h >= 720 else 0) if self.tiles == "auto" else int(self.tiles)
        if tiled and grid > 1:
            for x0, y0, x1, y1 in tile_grid(w, h, grid, self.tile_overlap):
                found += self._detect_region(rgb[y0:y1, x0:x1], x0, y0)
        return non_max_suppression(found, self.nms_iou)

    def _detect_region(self, rgb: np.ndarray, dx: int, dy: int) -> list[Detection]:
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        h, w = rgb.shape[:2]
        out = []
        for d in self._detector.detect(image).detections:
            bb = d.bounding_box
            box = Box(bb.origin_x + dx, bb.origin_y + dy, bb.origin_x + bb.width + dx, bb.origin_y + bb.height + dy)
            kps = np.array([[k.x * w + dx, k.y * h + dy] for k in d.keypoints], dtype=np.float32) if d.keypoints else None
            out.append(Detection(box, float(d.categories[0].score), kps))
        return out

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None


@contextlib.contextmanager
def _quiet_stderr():
    """Silence native-code writes to file descriptor 2 (Python's sys.stderr is untouched afterwards)."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def tile_grid(width: int, height: int, n: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """n x n tiles covering the frame, each overlapping its neighbours by `overlap` of its size."""
    tw, th = width / (n - (n - 1) * overlap), height / (n - (n - 1) * overlap)
    sx, sy = tw * (1 - overlap), th * (1 - overlap)
    return [(int(i * sx), int(j * sy), int(min(width, i * sx + tw)), int(min(height, j * sy + th)))
            for j in range(n) for i in range(n)]


def non_max_suppression(dets: list[Detection], iou: float) -> list[Detection]:
    """Keep the best-scoring of overlapping detections; a face inside a tile and the whole frame counts once.
    Overlap is also tested as intersection over the smaller box: a face cut by a tile edge yields a partial box."""
    kept: list[Detection] = []
    for d in sorted(dets, key=lambda d: d.score, reverse=True):
        if all(_overlap(d.box, k.box) < iou for k in kept):
            kept.append(d)
    return kept


def _overlap(a: Box, b: Box) -> float:
    ix = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    smaller = min(a.width * a.height, b.width * b.height)
    return max(a.iou(b), ix * iy / smaller if smaller > 0 else 0.0)
