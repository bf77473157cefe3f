"""468-point face mesh per detected face: MediaPipe's face_landmark model (converted to ONNX) on ONNX Runtime.

Pre-processing follows MediaPipe's face_landmark_front graph (FaceDetectionFrontDetectionToRoi + FaceLandmarkCpu):
a square ROI centred on the detection box, side = 1.5 x the box's longer side, rotated so the eyes (keypoints 0
and 1) are level, mapped corner-to-corner onto 192x192 with bilinear sampling and replicated borders, RGB in
[0, 1]. The model returns points in those 192 px input coordinates; the inverse affine maps them to the frame.
All faces of a frame run in one batched session.run.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files

import cv2
import numpy as np

from streamdetect.faces.crop import eye_angle
from streamdetect.faces.types import Detection
from streamdetect.logs import ORT_SEVERITY

MODEL_FILE = "face_landmark.onnx"
INPUT_SIZE = 192
ROI_SCALE = 1.5  # RectTransformationCalculator scale_x/scale_y in face_detection_front_detection_to_roi.pbtxt
NUM_LANDMARKS = 468

# Canonical MediaPipe face-mesh indices. "Right"/"left" are the subject's: the right eye is on the image's left.
# Eyes in eye-aspect-ratio order p1..p6: corner, two upper lid points, other corner, two lower lid points, so that
# EAR = (|p2-p6| + |p3-p5|) / (2 |p1-p4|).
RIGHT_EYE = (33, 160, 158, 133, 153, 144)
LEFT_EYE = (362, 385, 387, 263, 373, 380)
# Inner lips (upper, lower, right corner, left corner), then outer lips in the same order.
# Mouth aspect ratio = |13-14| / |78-308|.
MOUTH = (13, 14, 78, 308, 0, 17, 61, 291)
# Brows: upper edge from the outer end inwards, then lower edge back outwards.
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
# Face outline, clockwise in the image from the top of the forehead.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
NOSE_TIP = 1
CHIN = 152


def model_path() -> str:
    return str(files("streamdetect.faces") / "models" / MODEL_FILE)


def roi_transform(detection: Detection, size: int = INPUT_SIZE) -> np.ndarray:
    """2x3 affine from frame pixels to model-input pixels for one face (MediaPipe's ROI, see module doc)."""
    cx, cy = detection.box.center
    side = ROI_SCALE * max(detection.box.width, detection.box.height, 1.0)
    m = cv2.getRotationMatrix2D((cx, cy), eye_angle(detection), size / side)  # rotate + scale about the centre
    m[:, 2] += (size / 2 - cx, size / 2 - cy)  # then move the centre to the middle of the input
    return m


class FaceMesh:
    """Face-mesh landmarks for the detections of a frame, on ONNX Runtime's CPU provider."""

    def __init__(self, model: str | None = None, threads: int = 1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = ORT_SEVERITY
        # Idle worker threads spin by default, which halved throughput on a 2-core machine shared with decoding.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(model or model_path(), so, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def landmarks(self, rgb: np.ndarray, detections: Sequence[Detection]) -> list[np.ndarray]:
        """For each detection a (468, 3) float32 array: x, y in frame pixels, z relative depth in the same scale."""
        return self.landmarks_with_presence(rgb, detections)[0]

    def landmarks_with_presence(self, rgb: np.ndarray, detections: Sequence[Detection]
                                ) -> tuple[list[np.ndarray], np.ndarray]:
        """Landmarks as in `landmarks`, and the model's face-presence probability per detection, shape (N,).
        MediaPipe drops a face whose presence is below 0.5 (the ROI holds no face)."""
        if not detections:
            return [], np.zeros(0, np.float32)
        transforms = [roi_transform(d) for d in detections]
        batch = np.stack([
            cv2.warpAffine(rgb, m, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            for m in transforms]).astype(np.float32) * np.float32(1 / 255)
        points, logits = self._session.run(None, {self._input: batch})
        presence = (1 / (1 + np.exp(-logits[:, 0]))).astype(np.float32)
        out = []
        for m, pts in zip(transforms, points.reshape(len(detections), NUM_LANDMARKS, 3)):
            inv = cv2.invertAffineTransform(m)
            xyz = np.empty_like(pts)
            xyz[:, :2] = pts[:, :2] @ inv[:, :2].T + inv[:, 2]
            xyz[:, 2] = pts[:, 2] * np.hypot(*inv[0, :2])  # input px -> frame px: undo the ROI's scale only
            out.append(xyz)
        return out, presence
