"""The face stage (streamdetect.faces.stage): which detector passes run, small faces kept between tiled passes,
no spurious faces on the bundled sample, and the cost in passes (counted, not timed)."""

import collections

import cv2
import numpy as np
import pytest

from streamdetect.config import FacesConfig, ServiceConfig
from streamdetect.faces.detector import MediaPipeFaceDetector, square_tiles
from streamdetect.faces.stage import FaceStage
from streamdetect.faces.tracker import FaceTracker
from streamdetect.faces.types import Box, Detection
from tests.support.clips import sample_frame, sample_frames


# -- geometry and schedule, with stand-in detectors -------------------------------------------------------------
def test_square_tiles_cover_the_frame_without_a_horizontal_cut():
    assert square_tiles(1280, 720) == [(0, 0, 720, 720), (560, 0, 1280, 720)]
    assert square_tiles(1920, 1080) == [(0, 0, 1080, 1080), (840, 0, 1920, 1080)]
    assert square_tiles(720, 1280) == [(0, 0, 720, 720), (0, 560, 720, 1280)]  # portrait: along the height
    wide = square_tiles(3840, 1080)
    assert wide[0][0] == 0 and wide[-1][2] == 3840 and all(b[0] < a[2] for a, b in zip(wide, wide[1:]))


def test_a_tile_drops_faces_cut_by_its_inner_edges():
    det = MediaPipeFaceDetector.__new__(MediaPipeFaceDetector)  # no model: only the tile logic is exercised
    det.tiles, det.tile_overlap, det.nms_iou = "auto", 0.25, 0.4
    boxes = [Box(600, 300, 700, 400), Box(650, 300, 720, 370), Box(0, 0, 60, 60)]  # whole, cut at x=720, at the border
    det._detect_region = lambda rgb, dx, dy, kind="full": [Detection(b, 0.9) for b in boxes]
    kept = det.detect_tile(np.zeros((720, 1280, 3), np.uint8), 0)
    assert [d.box for d in kept] == [boxes[0], boxes[2]]


class CountingDetector:
    """Stands in for MediaPipeFaceDetector: one still face, and a count of every pass asked for."""

    nms_iou = 0.4

    def __init__(self, box=Box(500, 200, 700, 400)):
        self.box, self.calls = box, collections.Counter()

    def tiles_for(self, w, h):
        return square_tiles(w, h)

    def full_min_px(self, w, h):
        return 93.0

    def detect_full(self, rgb):
        self.calls["full"] += 1
        return [Detection(self.box, 0.9)]

    def detect_tile(self, rgb, i):
        self.calls["tile"] += 1
        return []

    def detect_roi(self, rgb, box):
        self.calls["roi"] += 1
        return []

    def merge_tiles(self, rgb, found, tiled, vouched, max_verify=3):
        return found


def run_frames(stage, frames=60, phase=0, tracker=None):
    tracker = tracker or FaceTracker()
    rgb = np.zeros((720, 1280, 3), np.uint8)
    ran = []
    for i in range(frames):
        before = sum(stage.detector.calls.values())
        stage.step(rgb, tracker, i, phase)
        if sum(stage.detector.calls.values()) > before:
            ran.append(i)
    return ran


def test_a_steady_face_costs_every_other_run_and_tiles_take_turns():
    det = CountingDetector()
    ran = run_frames(FaceStage(det, FacesConfig()), 60)
    assert ran[0] == 0 and all((i % 3) == 0 for i in ran)
    assert len(ran) <= 12  # 20 runs due; steady ones skip the next (tiled runs never skip)
    assert det.calls["tile"] == 2 + 3  # both tiles on the first frame, then one every 15 frames (15, 30, 45)
    det = CountingDetector()
    ran = run_frames(FaceStage(det, FacesConfig(skip_steady=False)), 60)
    assert len(ran) == 20


def test_streams_are_staggered():
    stage = FaceStage(CountingDetector(), FacesConfig(skip_steady=False))
    runs = [set(run_frames(stage, 30, phase)) - {0} for phase in range(3)]
    assert not (runs[0] & runs[1]) and not (runs[1] & runs[2]) and not (runs[0] & runs[2])


def test_a_plain_detector_gets_the_plain_schedule():
    calls = []

    class Plain:
        def detect(self, rgb, tiled=True):
            calls.append(tiled)
            return []

    stage = FaceStage(Plain(), FacesConfig(detect_every=3, tile_every=15))
    tracker = FaceTracker()
    for i in range(30):
        stage.step(np.zeros((720, 1280, 3), np.uint8), tracker, i)
    assert calls == [True, False, False, False, False, True, False, False, False, False]


# -- on real footage ------------------------------------------------------------------------------------------
def small_face_frames(face_px: int, frames: int):
    """720p frames with the sample's face scaled to `face_px`, drifting right by 2 px a frame."""
    base = sample_frame(0)
    scale = face_px / 218  # the detector's box on frame 0 is ~218 px tall
    small = cv2.resize(base, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    for i in range(frames):
        canvas = np.full((720, 1280, 3), 100, np.uint8)
        x, y = 200 + 2 * i, 400
        canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
        yield canvas


def test_a_small_face_is_kept_between_tiled_runs(detector):
    """A 48 px face in 720p, which only tiles or a padded look can see: found on nearly every detector run (it
    used to be flagged `lost`, and so never scored, on every run but the tiled ones)."""
    stage, tracker = FaceStage(detector, FacesConfig()), FaceTracker(max_missed=5)
    seen, ids = 0, set()
    for i, rgb in enumerate(small_face_frames(48, 45)):
        update = stage.step(rgb, tracker, i)
        ids |= {t.track_id for t in update.active}
        seen += any(t.missed == 0 for t in update.active)
    assert len(ids) == 1 and seen >= 0.9 * 45, (ids, seen)


def test_the_sample_costs_fewer_passes_than_the_grid(detector):
    """Counted, not timed: the old schedule ran 1 whole-frame pass every 3 frames and 4 grid tiles every 15
    (0.6 passes per frame); the stage needs under half of that on the sample, and finds its one face."""
    det = MediaPipeFaceDetector()
    try:
        stage, tracker = FaceStage(det, FacesConfig()), FaceTracker(max_missed=5)
        ids = set()
        for i, rgb in enumerate(sample_frames(120)):
            ids |= {t.track_id for t in stage.step(rgb, tracker, i).active}
        passes = sum(n for n, _ in det.stats.values())
    finally:
        det.close()
    assert ids == {1} and passes / 120 < 0.3, (ids, det.stats)


@pytest.fixture(scope="module")
def default_engine(tmp_path_factory):
    from streamdetect.engines import load_engine
    from streamdetect.service import default_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STREAMDETECT_CACHE", str(tmp_path_factory.mktemp("default-model-cache")))
        return load_engine(default_model(), backend="onnxruntime")


def test_scanning_the_sample_finds_its_face_and_nothing_else(default_engine, detector):
    """The bundled sample has one face, which leaves the frame (frames 154-204) and comes back: exactly two
    tracks, each scored. The 2 x 2 tile grid used to add a collar/chest "face" (tiles cut across the face at
    y = 308 and a 2x magnified collar scored 0.6), seen only on tiled passes and so flagged `lost` otherwise."""
    from streamdetect.scan import scan
    from streamdetect.service import sample_clip

    result = scan(sample_clip(), ServiceConfig(), default_engine, detector)
    tracks = result["tracks"]
    assert len(tracks) == 2, tracks
    assert all(t["frames"] >= 100 and t["verdict"] != "unknown" for t in tracks), tracks
    assert tracks[0]["last_frame"] < 205 <= tracks[1]["first_frame"] + 5, tracks
