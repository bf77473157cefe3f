"""MediaPipe face detection through the Tasks API, offline, with the model files bundled in the package.

BlazeFace's full-range model sees a 192x192 view of the frame, so a 40 px face in 1280x720 is ~6 px to it and
is missed. Tiles make small faces larger to the model: with `tiles="auto"` a landscape frame >= 720 px tall is
also cut into square tiles as tall as the frame (two, overlapping, for 16:9), which magnify as much as a 2 x 2 grid
of 16:9 tiles (both are letterboxed to 192 px across their longer side) at half the inference cost and without a
horizontal cut through the middle of the frame. `tiles=N` keeps the N x N grid.

Three kinds of pass, each one 192x192 inference (~6-7 ms on one core of the development VM):
  * `detect_full`: the whole frame; finds faces down to ~14 px at model scale (~90 px in 720p).
  * `detect_tile`: one tile; detections touching an inner tile edge are dropped (a face cut by the edge is either
    whole in the overlapping neighbour, or large enough for the whole-frame pass). Such half faces, and a shirt
    collar or chest seen at 2x magnification under a face cut in two, were the spurious low-score "faces" that
    the old 2 x 2 grid reported on the bundled sample.
  * `detect_roi`: a padded square around one box, so a small face is seen large: keeps small tracked faces
    between tiled passes, and confirms a face that only a tile saw (`detect` and faces.stage verify those).
"""

from __future__ import annotations

import time
from importlib.resources import files
from typing import Protocol

import cv2
import numpy as np

from streamdetect.faces.types import Box, Detection
from streamdetect.logs import native_stderr_filtered, native_stderr_filtered_until_seen, quiet_matplotlib

MODELS = {
    "full_range": "face_detection_full_range_sparse.tflite",  # faces up to ~5 m: webcams, broadcasts
    "short_range": "face_detection_short_range.tflite",  # faces within ~2 m: selfie/video-call framing
}


MODEL_INPUT = 192  # the full-range model's input side
FULL_MIN_MODEL_PX = 14  # faces smaller than this at model scale are mostly missed by a whole-frame pass
MIN_SQUARE_OVERLAP = 0.2  # square tiles overlap by at least this much of a side (144 px in 720p)
EDGE_PX = 2  # a tile detection this close to an inner tile edge is a face cut by the edge
ROI_PAD = 3.0  # a region-of-interest pass looks at a square of 3x the face box
MIN_ROI_PX = 96  # ... and at least this many pixels: a tiny box still gets context
PROPOSAL_SCORE = 0.2  # tiles propose faces from this score; a padded look confirms them at min_score
LARGE_FOR_FULL = 1.5  # a tile-only "face" this many times full_min_px tall is dropped unverified
MAX_VERIFY = 3  # proposals confirmed per run at most, best first (more wait for the next tiled run)
ROI_MATCH = 0.3  # an ROI detection must overlap the box it was asked about this much
PRESCALE_ABOVE = 1280  # regions larger than this are resized before MediaPipe sees them ...
PRESCALE_TO = 640  # ... to this longer side (still > 3x the model input, so nothing it could see is lost)


class FaceDetector(Protocol):
    def detect(self, rgb: np.ndarray, tiled: bool = True) -> list[Detection]: ...

    def close(self) -> None: ...


def model_path(name: str) -> str:
    if name not in MODELS:
        raise ValueError(f"unknown face detection model {name!r}; choose one of {', '.join(MODELS)}")
    return str(files("streamdetect.faces") / "models" / MODELS[name])


class MediaPipeFaceDetector:
    def __init__(self, model: str = "full_range", min_score: float = 0.5, tiles: int | str = "auto",
                 tile_overlap: float = 0.25, nms_iou: float = 0.4, proposal_score: float = PROPOSAL_SCORE):
        """proposal_score: tiles propose faces down to this score (a 40 px face in 720p often scores 0.2-0.5
        there); a proposal counts only once a padded look around it finds it at `min_score`."""
        quiet_matplotlib()  # mediapipe's vision package imports matplotlib.pyplot
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp

        def create(score):
            options = vision.FaceDetectorOptions(
                base_options=BaseOptions(model_asset_path=model_path(model)),
                running_mode=vision.RunningMode.IMAGE,
                min_detection_confidence=score,
                min_suppression_threshold=0.3,
            )
            det = vision.FaceDetector.create_from_options(options)
            det.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((64, 64, 3), np.uint8)))
            return det

        # LiteRT prints dozens of INFO/"Sparsity" lines per model load from C++, and (usually) the first detection
        # of the process an absl banner and an alignment warning: both happen here, filtered (streamdetect.logs).
        # Two instances: MediaPipe blends overlapping boxes (weighted NMS), so a lower threshold would also move
        # the boxes of the whole-frame pass, which must stay the boxes the models were trained on.
        with native_stderr_filtered():
            self._detector = create(min_score)
            self._proposer = create(min(min_score, proposal_score)) if proposal_score < min_score else self._detector
        self.min_score = min_score
        self.stats: dict[str, list] = {}  # pass kind (full, tile, roi) -> [passes, seconds]: profiling
        self.tiles, self.tile_overlap, self.nms_iou = tiles, tile_overlap, nms_iou

    def detect(self, rgb: np.ndarray, tiled: bool = True) -> list[Detection]:
        """All faces in an RGB uint8 frame, boxes and keypoints in frame pixels, highest score first.
        tiled=False skips the (costly) tiled pass even when tiling is configured. A face that only a tile saw is
        kept when a padded look around it (`detect_roi`) finds it again."""
        found = self.detect_full(rgb)
        if not tiled:
            return found
        tiled_dets = [d for i in range(len(self.tiles_for(rgb.shape[1], rgb.shape[0]))) for d in self.detect_tile(rgb, i)]
        return self.merge_tiles(rgb, found, non_max_suppression(tiled_dets, self.nms_iou), [])

    def merge_tiles(self, rgb: np.ndarray, found: list[Detection], tiled: list[Detection], vouched,
                    max_verify: int = MAX_VERIFY) -> list[Detection]:
        """Whole-frame detections plus tile detections: a tile detection on a whole-frame one competes with it by
        score; one on a box in `vouched` (live tracks) is taken as it is (weak ones only keep a track alive); any
        other is a proposal, kept as a padded look around it sees it (at most `max_verify`, best first)."""
        keep, candidates = [], []
        large = LARGE_FOR_FULL * self.full_min_px(rgb.shape[1], rgb.shape[0])
        for t in tiled:
            on_found = any(_overlap(t.box, f.box) >= self.nms_iou for f in found)
            if not on_found and t.box.height >= large:
                continue  # the whole-frame pass finds a face this large: what only a tile saw is not one
            if on_found:  # competes by score; a weak one may be the better box: that one may be a loose guess
                (keep if t.score >= self.min_score else candidates).append(t)
            elif any(_overlap(t.box, b) >= ROI_MATCH for b in vouched):
                keep.append(t)  # the tracker decides: weak detections keep a track alive, never start one
            else:
                candidates.append(t)
        keep += self.verify(rgb, candidates[:max_verify])
        return non_max_suppression(found + keep, self.nms_iou)

    # -- the passes faces.stage schedules --------------------------------------------------------------------
    def tiles_for(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """The tile regions (x0, y0, x1, y1) of a frame of this size; [] when it is not tiled."""
        if self.tiles == "auto":
            return square_tiles(width, height) if min(width, height) >= 720 else []
        n = int(self.tiles)
        return tile_grid(width, height, n, self.tile_overlap) if n > 1 else []

    def full_min_px(self, width: int, height: int) -> float:
        """Face height below which the whole-frame pass stops being reliable (~14 px at model scale)."""
        return FULL_MIN_MODEL_PX * max(width, height) / MODEL_INPUT

    def detect_full(self, rgb: np.ndarray) -> list[Detection]:
        """One whole-frame pass."""
        return non_max_suppression(self._detect_region(rgb, 0, 0, kind="full"), self.nms_iou)

    def detect_tile(self, rgb: np.ndarray, index: int) -> list[Detection]:
        """One tile's pass, without the detections cut by an inner tile edge."""
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = self.tiles_for(w, h)[index]
        inner = (x0 > 0, y0 > 0, x1 < w, y1 < h)  # frame borders are not cuts
        out = []
        for d in self._detect_region(rgb[y0:y1, x0:x1], x0, y0, "tile"):
            b = d.box
            cut = (inner[0] and b.x0 <= x0 + EDGE_PX) or (inner[1] and b.y0 <= y0 + EDGE_PX) or \
                  (inner[2] and b.x1 >= x1 - EDGE_PX) or (inner[3] and b.y1 >= y1 - EDGE_PX)
            if not cut:
                out.append(d)
        return out

    def detect_roi(self, rgb: np.ndarray, box: Box, pad: float = ROI_PAD) -> list[Detection]:
        """One pass over a square of `pad` x the box's longer side around its centre (clipped to the frame),
        returning the detection that overlaps the box best ([] when none does)."""
        h, w = rgb.shape[:2]
        cx, cy = box.center
        half = max(box.width, box.height, MIN_ROI_PX / pad) * pad / 2
        x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
        x1, y1 = int(min(w, cx + half)), int(min(h, cy + half))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return []
        found = [d for d in self._detect_region(rgb[y0:y1, x0:x1], x0, y0, "roi") if _overlap(d.box, box) >= ROI_MATCH]
        return [max(found, key=lambda d: d.box.iou(box) + d.score)] if found else []

    def verify(self, rgb: np.ndarray, candidates: list[Detection]) -> list[Detection]:
        """Each candidate that a padded look around it finds again, as that look saw it (its score decides)."""
        return [r for d in candidates for r in self.detect_roi(rgb, d.box)]

    def _detect_region(self, rgb: np.ndarray, dx: int, dy: int, kind: str = "full") -> list[Detection]:
        """One inference over a region whose top-left is (dx, dy) in the frame; tiles use the proposing
        instance (lower threshold)."""
        start = time.perf_counter()
        h, w = rgb.shape[:2]
        scale = 1.0
        if max(h, w) > PRESCALE_ABOVE:  # MediaPipe resamples to 192 px anyway: hand it a smaller copy (cheaper
            scale = PRESCALE_TO / max(h, w)  # at 1080p), bilinear like its own resampler
            rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_LINEAR)
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        sh, sw = rgb.shape[:2]
        with native_stderr_filtered_until_seen():  # LiteRT's alignment warning, if the warm-up did not see it
            result = (self._proposer if kind == "tile" else self._detector).detect(image)
        out = []
        for d in result.detections:
            bb = d.bounding_box
            box = Box(bb.origin_x / scale + dx, bb.origin_y / scale + dy,
                      (bb.origin_x + bb.width) / scale + dx, (bb.origin_y + bb.height) / scale + dy)
            kps = np.array([[k.x * w + dx, k.y * h + dy] for k in d.keypoints], dtype=np.float32) if d.keypoints else None
            out.append(Detection(box, float(d.categories[0].score), kps))
        stat = self.stats.setdefault(kind, [0, 0.0])
        stat[0] += 1
        stat[1] += time.perf_counter() - start
        return out

    def close(self) -> None:
        if self._detector is not None:
            with native_stderr_filtered():  # LiteRT logs "DestroyAccelerator" at INFO
                if self._proposer is not self._detector:
                    self._proposer.close()
                self._detector.close()
            self._detector = self._proposer = None


def square_tiles(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Squares as large as the frame's shorter side, spread evenly along its longer side (overlapping, at least
    `MIN_SQUARE_OVERLAP` of a side): [(0, 0, 720, 720), (560, 0, 1280, 720)] for 1280x720."""
    short, long_ = min(width, height), max(width, height)
    if long_ <= short:
        return [(0, 0, width, height)]
    n = int(np.ceil((long_ - MIN_SQUARE_OVERLAP * short) / (short * (1 - MIN_SQUARE_OVERLAP))))
    n = max(2, n)
    starts = [round(i * (long_ - short) / (n - 1)) for i in range(n)]
    if width >= height:
        return [(s, 0, s + short, height) for s in starts]
    return [(0, s, width, s + short) for s in starts]


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
