"""MediaPipe face detection through the Tasks API, offline, with the model files bundled in the package.

BlazeFace's full-range model sees a 192x192 view of the frame, so a 40 px face in 1280x720 is ~6 px to it and
is missed. With `tiles=N` the frame is also cut into an N x N grid of overlapping tiles, each detected on its
own, and the results merged by non-maximum suppression: small faces become 2-3x larger to the model.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Protocol

import numpy as np

from streamdetect.faces.types import Box, Detection
from streamdetect.logs import native_stderr_filtered, native_stderr_filtered_until_seen, quiet_matplotlib

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
        quiet_matplotlib()  # mediapipe's vision package imports matplotlib.pyplot
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=model_path(model)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=min_score,
            min_suppression_threshold=0.3,
        )
        # LiteRT prints dozens of INFO/"Sparsity" lines per model load from C++, and (usually) the first detection
        # of the process an absl banner and an alignment warning: both happen here, filtered (streamdetect.logs).
        with native_stderr_filtered():
            self._detector = vision.FaceDetector.create_from_options(options)
            self._detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((64, 64, 3), np.uint8)))
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
        with native_stderr_filtered_until_seen():  # LiteRT's alignment warning, if the warm-up did not see it
            result = self._detector.detect(image)
        out = []
        for d in result.detections:
            bb = d.bounding_box
            box = Box(bb.origin_x + dx, bb.origin_y + dy, bb.origin_x + bb.width + dx, bb.origin_y + bb.height + dy)
            kps = np.array([[k.x * w + dx, k.y * h + dy] for k in d.keypoints], dtype=np.float32) if d.keypoints else None
            out.append(Detection(box, float(d.categories[0].score), kps))
        return out

    def close(self) -> None:
        if self._detector is not None:
            with native_stderr_filtered():  # LiteRT logs "DestroyAccelerator" at INFO
                self._detector.close()
            self._detector = None


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
