"""Expression cues: geometric measures from face-mesh landmarks, identical in training and serving."""

import numpy as np

from streamdetect.faces.expression import (EXPRESSION_SIZE, STATIC_NAMES, ExpressionTracker, clip_features, mirror,
                                           static_features)
from tests.support.prepared import face_landmarks


def face(rng, mouth_gap=0.0, yaw=0.0):
    """Mesh points with a plausible layout for the indices the measures use (crop units)."""
    p = face_landmarks(rng)
    put = {33: (0.35, 0.4), 133: (0.45, 0.4), 160: (0.38, 0.39), 158: (0.42, 0.39), 153: (0.42, 0.41),
           144: (0.38, 0.41), 362: (0.55, 0.4), 263: (0.65, 0.4), 385: (0.58, 0.39), 387: (0.62, 0.39),
           373: (0.62, 0.41), 380: (0.58, 0.41), 105: (0.4, 0.33), 334: (0.6, 0.33), 13: (0.5, 0.66),
           14: (0.5, 0.66 + mouth_gap), 78: (0.44, 0.67), 308: (0.56, 0.67), 61: (0.42, 0.67), 291: (0.58, 0.67),
           1: (0.5 + yaw, 0.55), 152: (0.5, 0.85)}
    for i, xy in put.items():
        p[i, :2] = xy
    return p


def test_measures_follow_the_face():
    rng = np.random.default_rng(0)
    closed, opened = static_features(face(rng)), static_features(face(rng, mouth_gap=0.06))
    i = STATIC_NAMES.index("mouth_open")
    assert opened[i] > closed[i] + 0.3
    turned = static_features(face(rng, yaw=0.05))
    assert turned[STATIC_NAMES.index("yaw")] > 0.2 > abs(closed[STATIC_NAMES.index("yaw")])
    # ratios of distances: the same face twice as large in the crop gives the same measures
    np.testing.assert_allclose(static_features(face(rng) * 2), closed, rtol=1e-4, atol=1e-5)


def test_serving_tracker_matches_training_clip_features():
    rng = np.random.default_rng(1)
    clip = np.stack([face(rng, mouth_gap=0.01 * t) for t in range(7)])
    clip[0] = np.nan  # not found yet
    clip[4] = np.nan  # the mesh lost the face in one frame
    trained = clip_features(clip)
    tracker = ExpressionTracker()
    served = np.stack([tracker.update("face", None if np.isnan(f).any() else f) for f in clip])
    assert trained.shape == (7, EXPRESSION_SIZE)
    np.testing.assert_allclose(served, trained, rtol=1e-5, atol=1e-6)
    half = len(STATIC_NAMES)
    assert np.all(trained[0] == 0)  # nothing known before the face is found
    assert np.all(trained[1, half:] == 0) and np.any(trained[2, half:] != 0)  # motion from the 2nd known frame
    np.testing.assert_allclose(trained[4, :half], trained[3, :half])  # a lost frame repeats the last measures
    assert np.all(trained[4, half:] == 0)


def test_mirror_swaps_sides_and_undoes_itself():
    f = clip_features(np.stack([face(np.random.default_rng(2), yaw=0.03)] * 2))
    m = mirror(f)
    yaw = STATIC_NAMES.index("yaw")
    assert m[0, yaw] == -f[0, yaw]
    assert m[0, STATIC_NAMES.index("right_eye_open")] == f[0, STATIC_NAMES.index("left_eye_open")]
    np.testing.assert_array_equal(mirror(m), f)


def test_an_expression_model_exports_and_serves(tmp_path, detector):
    """Trained with expression cues -> the exported step graph reads CNN + expression features, and the live
    pipeline computes them from the face mesh for every tracked face."""
    import onnx

    from streamdetect.config import ServiceConfig
    from streamdetect.engines import load_engine
    from streamdetect.export import export_model
    from streamdetect.model import ModelConfig, new_model
    from streamdetect.scan import scan
    from tests.conftest import realistic
    from tests.test_prepare import face_clip

    config = ModelConfig(backbone="mobilenet_v2", hidden_size=16, expression_size=EXPRESSION_SIZE)
    export_model(realistic(new_model(config)), tmp_path / "export")  # validated against torch inside
    step = onnx.load(str(tmp_path / "export" / "step.onnx"))
    width = step.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    assert width == config.feature_size + EXPRESSION_SIZE
    engine = load_engine(tmp_path / "export", backend="onnxruntime")
    result = scan(face_clip(tmp_path / "face.mp4", frames=20), ServiceConfig(window=8), engine, detector)
    assert result["frames_with_faces"] >= 18
    assert 0 <= result["p_fake"] <= 1
