"""Face-mesh landmarks (MediaPipe face_landmark converted to ONNX) on real frames and synthetic geometry.

The real-frame tests run on the bundled sample clip (a real face) and, when STREAMDETECT_DATA points at the shared
research data, on FaceForensics++ actor clips too."""

import cv2
import numpy as np
import onnx
import pytest

from streamdetect.faces.crop import align_crop, points_to_crop
from streamdetect.faces.landmarks import (CHIN, FACE_OVAL, LEFT_BROW, LEFT_EYE, MOUTH, NOSE_TIP, RIGHT_BROW,
                                          RIGHT_EYE, FaceMesh, model_path)
from streamdetect.faces.types import Box, Detection
from tests.conftest import shared_clip
from tests.support.clips import grid_frame, sample_frame

FRONTAL = "videos/real/ffpp_c40_actors_13__talking_against_wall.mp4"  # one face looking at the camera
TWO_FACES = "videos/real/ffpp_c40_actors_13__walking_down_indoor_hall_disgust.mp4"


def first_frame(relative: str) -> np.ndarray:
    import av

    with av.open(str(shared_clip(relative))) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


@pytest.fixture(scope="module")
def mesh():
    return FaceMesh()


@pytest.fixture(scope="module", params=["sample", "ffpp"])
def frontal(request, detector):
    """One face looking at the camera: the bundled sample's held close-up (frame 135, face ~390 px), or a
    FaceForensics++ actor clip's first frame. (On the sample's medium shots BlazeFace's eye keypoints, which
    align_crop levels, sit up to ~5 px off the mesh's eye corners at 224 px: too coarse for the levelling check.)"""
    rgb = sample_frame(135) if request.param == "sample" else first_frame(FRONTAL)
    # One confident face. (BlazeFace scores this FF++ c40 first frame ~0.78: compressed and 1080p, the face ~280 px.)
    (face,) = [d for d in detector.detect(rgb) if d.score > 0.6]
    return rgb, face


@pytest.fixture(scope="module", params=["sample", "ffpp"])
def two_faces(request):
    """Two real faces in one frame: two moments of the sample side by side, or a FaceForensics++ actor clip."""
    return grid_frame([sample_frame(0), sample_frame(60)]) if request.param == "sample" else first_frame(TWO_FACES)


def cartoon(h: int = 360, w: int = 480) -> tuple[np.ndarray, Detection]:
    """A drawn, blurred face-like image and a detection for it: smooth content keeps the check about geometry."""
    rgb = np.full((h, w, 3), (90, 120, 150), np.uint8)
    cv2.ellipse(rgb, (200, 170), (70, 95), 10, 0, 360, (225, 180, 150), -1)
    for x, y in ((170, 150), (230, 160)):
        cv2.circle(rgb, (x, y), 9, (40, 30, 30), -1)
    cv2.ellipse(rgb, (195, 225), (28, 10), 10, 0, 360, (160, 60, 60), -1)
    rgb = cv2.GaussianBlur(rgb, (0, 0), 2)
    kps = np.array([[170, 150], [230, 160], [202, 190], [195, 225], [135, 160], [265, 180]], np.float32)
    return rgb, Detection(Box(130, 90, 270, 250), 0.9, kps)


def test_model_loads_and_shapes(mesh):
    rgb, det = cartoon()
    assert mesh.landmarks(rgb, []) == []
    points, presence = mesh.landmarks_with_presence(rgb, [det, det])
    assert len(points) == 2 and presence.shape == (2,)
    assert all(p.shape == (468, 3) and p.dtype == np.float32 and np.isfinite(p).all() for p in points)
    props = {p.key: p.value for p in onnx.load(model_path()).metadata_props}
    assert props["license"] == "Apache-2.0" and props["mediapipe_version"] == "0.10.21"
    groups = (FACE_OVAL, LEFT_EYE, RIGHT_EYE, MOUTH, LEFT_BROW, RIGHT_BROW, (NOSE_TIP, CHIN))
    assert all(0 <= i < 468 for g in groups for i in g) and len(LEFT_EYE) == len(RIGHT_EYE) == 6


def test_rotated_frame_gives_rotated_landmarks(mesh):
    # Rotating the frame by 90 degrees (and the detection with it) must give the same crop, so the same landmarks
    # rotated: this checks the ROI's rotation sign and the inverse mapping, independently of the model's accuracy.
    rgb, det = cartoon()
    h = rgb.shape[0]

    def rot(p):  # pixel centres under cv2.ROTATE_90_CLOCKWISE: (x, y) -> (h - 1 - y, x)
        p = np.asarray(p, np.float32)
        return np.stack([h - 1 - p[..., 1], p[..., 0]], -1)

    (cx, cy), = rot([det.box.center])
    bw, bh = det.box.height, det.box.width
    rotated = Detection(Box(cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), det.score, rot(det.keypoints))
    (a,), (b,) = mesh.landmarks(rgb, [det]), mesh.landmarks(cv2.rotate(rgb, cv2.ROTATE_90_CLOCKWISE), [rotated])
    assert np.abs(rot(a[:, :2]) - b[:, :2]).max() < 0.1  # exact up to float rounding (measured 3e-5 px)
    assert np.abs(a[:, 2] - b[:, 2]).max() < 0.1


@pytest.mark.parametrize("size", [64, 112, 400])  # downscaled (INTER_AREA) and upscaled (INTER_LINEAR) crops
def test_points_to_crop_finds_a_dot_in_align_crop(size):
    # A blurred dot at a known sub-pixel position: its intensity centroid in align_crop's output must be where
    # points_to_crop puts it. A wrong resize pixel-centre convention alone would be off by ~0.4 px at size 64.
    h, w = 400, 500
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    det = Detection(Box(150, 100, 330, 300), 0.9, np.array([[200, 160], [280, 185]], np.float32))  # 17 deg roll
    cy, cx = np.mgrid[0:size, 0:size]
    for p in [(240.3, 200.7), (190.0, 150.0), (300.5, 260.2)]:
        dot = np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * 4.0 ** 2))
        crop = align_crop(np.repeat((dot * 255).astype(np.uint8)[..., None], 3, -1), det, size)[..., 0].astype(float)
        centroid = np.array([(crop * cx).sum(), (crop * cy).sum()]) / crop.sum()
        np.testing.assert_allclose(points_to_crop(np.array([p]), det, size)[0], centroid, atol=0.1)


def test_landmarks_on_a_real_face(mesh, frontal):
    rgb, face = frontal
    (points,), presence = mesh.landmarks_with_presence(rgb, [face])
    assert presence[0] > 0.5
    box, pad = face.box, 0.2 * max(face.box.width, face.box.height)
    assert (points[:, 0] > box.x0 - pad).all() and (points[:, 0] < box.x1 + pad).all()
    assert (points[:, 1] > box.y0 - pad).all() and (points[:, 1] < box.y1 + pad).all()
    # Eye centres from the mesh (mean of the two corners) sit on BlazeFace's eye keypoints.
    for eye, keypoint in ((RIGHT_EYE, face.keypoints[0]), (LEFT_EYE, face.keypoints[1])):
        centre = points[[eye[0], eye[3]], :2].mean(0)
        assert np.linalg.norm(centre - keypoint) < 0.15 * box.width
    # Anatomy: nose tip between the eyes and the chin, mouth below the nose.
    assert points[RIGHT_EYE[0], 1] < points[NOSE_TIP, 1] < points[MOUTH[0], 1] < points[CHIN, 1]


def test_noise_has_no_face(mesh, frontal):
    rgb, face = frontal
    noise = np.random.default_rng(0).integers(0, 256, rgb.shape, dtype=np.uint8)
    _, presence = mesh.landmarks_with_presence(noise, [face])
    assert presence[0] < 0.5


def test_batch_matches_single_calls(mesh, detector, two_faces):
    rgb = two_faces
    faces = [d for d in detector.detect(rgb) if d.score > 0.7]  # the smaller face of the sample grid scores ~0.8
    assert len(faces) == 2
    batched, presence = mesh.landmarks_with_presence(rgb, faces)
    for face, points, p in zip(faces, batched, presence):
        (single,), (p1,) = mesh.landmarks_with_presence(rgb, [face])
        np.testing.assert_allclose(points, single, atol=1e-3)
        assert p == pytest.approx(p1, abs=1e-4)


def test_points_to_crop_matches_align_crop(mesh, frontal):
    rgb, face = frontal
    size, margin = 224, 2.0
    (points,) = mesh.landmarks(rgb, [face])
    in_crop = points_to_crop(points, face, size, margin)
    eyes = in_crop[[RIGHT_EYE[0], RIGHT_EYE[3], LEFT_EYE[0], LEFT_EYE[3]]]
    assert ((eyes >= 0) & (eyes < size)).all()
    assert abs(eyes[:2, 1].mean() - eyes[2:, 1].mean()) < 3  # align_crop levels the eyes (measured 1.2 px)
    # Landmarks found directly on align_crop's output agree with the mapped ones: the mapping matches the crop.
    crop = align_crop(rgb, face, size, margin)
    scale = size / max(2, round(max(face.box.width, face.box.height) * margin))
    (cx, cy), = points_to_crop(np.array([face.box.center]), face, size, margin)
    half_w, half_h = face.box.width * scale / 2, face.box.height * scale / 2
    in_crop_face = Detection(Box(cx - half_w, cy - half_h, cx + half_w, cy + half_h), face.score,
                             points_to_crop(face.keypoints, face, size, margin))
    (direct,) = mesh.landmarks(crop, [in_crop_face])
    assert np.linalg.norm(direct[:, :2] - in_crop, axis=1).max() < 1.5  # px of the 224 px crop; measured 0.2


def test_landmarks_in_crop_are_points_to_crop_in_crop_units():
    """prepare and the service store landmarks in crop units; that must be align_crop's geometry at any size."""
    from streamdetect.faces.crop import landmarks_in_crop, points_to_crop, square_transform
    from streamdetect.faces.types import Box, Detection

    det = Detection(Box(100, 80, 180, 176), 0.9, np.array([[125, 110], [158, 118], [140, 130], [141, 155],
                                                            [105, 120], [175, 128]], float))
    pts = np.random.default_rng(0).uniform([90, 70, -20], [190, 186, 20], (50, 3))
    side = square_transform(det)[1]
    unit = landmarks_in_crop(pts, det)
    np.testing.assert_allclose(unit[:, :2] * side, points_to_crop(pts, det, side), atol=1e-3)
    np.testing.assert_allclose(unit[:, 2] * side, pts[:, 2], atol=1e-3)
