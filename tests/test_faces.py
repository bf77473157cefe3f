"""Faces on real footage: MediaPipe detection (incl. small faces in 720p), alignment, quality flags, tracking.

Every test runs on the bundled sample clip (a real face, always present) and, when the shared research data is
mounted (STREAMDETECT_DATA), again on a FaceForensics++ original."""

import collections

import cv2
import numpy as np
import pytest

from streamdetect.faces.crop import align_crop, eye_angle
from streamdetect.faces.quality import quality_flags
from streamdetect.faces.tracker import FaceTracker
from streamdetect.faces.types import Box, Detection
from tests.conftest import FFPP_REAL, shared_clip
from tests.support.clips import grid_clip, sample_frame


def first_frame(path):
    import av

    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


@pytest.fixture(scope="module", params=["sample", "ffpp"])
def face_frame(request):
    """A 720p frame with one real face: the bundled sample's first frame (face ~210 px), or a FaceForensics++ one."""
    return sample_frame(0) if request.param == "sample" else first_frame(shared_clip(FFPP_REAL))


def test_detects_the_face_with_keypoints(detector, face_frame):
    faces = detector.detect(face_frame)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.7 and 150 < face.box.height < 400
    assert face.keypoints.shape == (6, 2)
    right_eye, left_eye, nose = face.keypoints[:3]
    assert right_eye[0] < left_eye[0] and face.box.y0 < nose[1] < face.box.y1


@pytest.mark.parametrize("face_px", [40, 48, 60])
def test_finds_small_faces_in_720p(detector, face_frame, face_px):
    """The issue's bar: faces >= 40 px tall in a 1280x720 frame, wherever they are."""
    big = detector.detect(face_frame)[0].box
    scale = face_px / big.height
    small = cv2.resize(face_frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    found = 0
    for x, y in [(40, 40), (600, 300), (1280 - small.shape[1] - 20, 720 - small.shape[0] - 20)]:
        canvas = np.full((720, 1280, 3), 100, np.uint8)
        canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
        found += any(abs(d.box.height - face_px) < face_px * 0.6 for d in detector.detect(canvas))
    assert found == 3


def test_without_tiling_small_faces_are_missed(detector, face_frame):
    """Why tiling exists: the whole-frame pass alone misses a 40 px face (proves the test above measures tiling)."""
    big = detector.detect(face_frame)[0].box
    small = cv2.resize(face_frame, None, fx=40 / big.height, fy=40 / big.height, interpolation=cv2.INTER_AREA)
    canvas = np.full((720, 1280, 3), 100, np.uint8)
    y = min(600, 720 - small.shape[0])  # low in the frame, away from the centre
    canvas[y : y + small.shape[0], 900 : 900 + small.shape[1]] = small
    assert detector.detect(canvas, tiled=False) == []


def test_alignment_levels_a_tilted_face(detector, face_frame):
    h, w = face_frame.shape[:2]
    rotated = cv2.warpAffine(face_frame, cv2.getRotationMatrix2D((w / 2, h / 2), 25, 1.0), (w, h))
    face = detector.detect(rotated)[0]
    assert abs(eye_angle(face)) > 15  # the tilt is seen...
    crop = align_crop(rotated, face, 224)
    again = detector.detect(cv2.resize(crop, (448, 448)))
    assert again and abs(eye_angle(again[0])) < 6  # ...and removed by the crop


def test_crop_is_deterministic_and_sized(face_frame, detector):
    face = detector.detect(face_frame)[0]
    a, b = align_crop(face_frame, face, 112), align_crop(face_frame, face, 112)
    assert a.shape == (112, 112, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    edge = Detection(Box(-50, -50, 60, 60), 0.9)  # partly outside the frame: padded, not an error
    assert align_crop(face_frame, edge, 112).shape == (112, 112, 3)


def test_quality_flags(face_frame, detector):
    face = detector.detect(face_frame)[0]
    crop = align_crop(face_frame, face, 112)
    assert quality_flags(crop, face) == ()
    assert quality_flags((crop * 0.15).astype(np.uint8), face) == ("too_dark",)
    assert quality_flags(cv2.GaussianBlur(crop, (0, 0), 6), face) == ("too_blurry",)
    tiny = Detection(Box(0, 0, 30, 30), 0.9)
    assert "too_small" in quality_flags(crop, tiny)


@pytest.fixture(scope="module", params=["grid", "hamilton"])
def multi_face_clip(request, tmp_path_factory):
    """(clip, faces expected at once, frames the lead face keeps its id, frames the next two keep theirs)."""
    if request.param == "grid":  # four real faces at once, each moving on its own (2x2 panels of the sample)
        return grid_clip(tmp_path_factory.mktemp("grid") / "grid.mp4", faces=4, frames=90), 4, 85, 85
    # real footage with several people walking in and out
    return shared_clip("videos/real/facerec_short_hamilton_clip.mp4"), 3, 150, 40


def test_tracking_keeps_ids_on_a_multi_face_clip(detector, multi_face_clip):
    """Several real faces: the main faces keep one id each over long stretches."""
    import av

    path, faces, lead, others = multi_face_clip
    tracker = FaceTracker(max_missed=5)
    lengths = collections.Counter()
    max_faces = 0
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            update = tracker.update(detector.detect(frame.to_ndarray(format="rgb24")))
            max_faces = max(max_faces, len(update.active))
            for t in update.active:
                lengths[t.track_id] += t.missed == 0
    assert max_faces >= faces
    longest = lengths.most_common(faces)
    assert longest[0][1] >= lead, f"the lead face changed id: {longest}"
    assert all(n >= others for _, n in longest[1:]), longest
