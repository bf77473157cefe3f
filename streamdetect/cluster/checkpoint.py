"""A stream's processing state as bytes, and back: the tracker, and per face its (h, c) states, score window and
verdict machine, plus the last frame number published. Taken on the processing thread (the pipeline's `on_frame`
hook), so it is one consistent frame's state.

The bytes are a pickle read back with an allow-list of classes (our state dataclasses, numpy arrays, deque):
anything else in a checkpoint (a tampered Redis) is refused, never constructed.
"""

from __future__ import annotations

import io
import pickle
import time

FORMAT = 1

_ALLOWED = {
    ("streamdetect.faces.tracker", "FaceTracker"), ("streamdetect.faces.tracker", "_State"),
    ("streamdetect.faces.types", "Box"), ("streamdetect.faces.types", "Detection"),
    ("streamdetect.windows", "TrackWindow"), ("streamdetect.windows", "_State"),
    ("streamdetect.scoring", "TrackScorer"), ("streamdetect.scoring", "Verdict"),
    ("streamdetect.scoring", "ScoringConfig"), ("streamdetect.pipeline", "FaceState"),
    ("collections", "deque"), ("builtins", "set"), ("builtins", "frozenset"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"checkpoint holds {module}.{name}, which a checkpoint never holds")
        return super().find_class(module, name)


def snapshot(worker, frame: int, seq: int) -> bytes:
    """worker: a pipeline StreamWorker; frame: the (cluster-wide) number of the frame just published."""
    return pickle.dumps({"format": FORMAT, "stream": worker.name, "seq": seq, "frame": frame, "ts": time.time(),
                         "frames": worker.frames, "tracker": worker.tracker, "faces": worker.faces},
                        protocol=pickle.HIGHEST_PROTOCOL)


def load(data: bytes | None) -> dict | None:
    if not data:
        return None
    state = _Unpickler(io.BytesIO(data)).load()
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError("not a StreamDetect checkpoint of this version")
    return state


def restore(worker, state: dict) -> None:
    """Put a checkpoint into a StreamWorker before its pipeline starts (no thread touches it yet)."""
    worker.tracker, worker.faces, worker.frames = state["tracker"], state["faces"], state["frames"]


def face_states(faces: dict) -> dict:
    """Plain view of per-face state, for comparing a restored stream with its checkpoint (tests, `status`)."""
    out = {}
    for track_id, fs in faces.items():
        w, s = fs.window, fs.scorer
        out[int(track_id)] = {
            "h": [st.h.tolist() for st in w.states], "c": [st.c.tolist() for st in w.states],
            "age": [st.age for st in w.states], "scores": list(w.scores), "frames": w.frames,
            "verdict": s.verdict.value, "confidence": s.confidence, "usable": s.usable}
    return out
