"""`streamdetect scan VIDEO`: the live pipeline over one file, summarised per face and for the whole video.

Whole-video p_fake follows SBI's video protocol: each frame's score is the most suspicious usable face in it,
and the video's is the mean over frames that had one. The JSON layout is versioned ("format") and documented
in the README; fields are only added within a version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamdetect.annotate import draw_faces
from streamdetect.config import ServiceConfig, SourceConfig
from streamdetect.errors import SourceOpenError
from streamdetect.pipeline import Pipeline
from streamdetect.scoring import reaches_alert

SCAN_FORMAT = "streamdetect.scan/1"


@dataclass
class TrackSummary:
    track: int
    first_frame: int
    last_frame: int = 0
    scores: list = field(default_factory=list)
    max_confidence: float | None = None
    final_verdict: str = "unknown"


class AnnotatedWriter:
    """Writes frames with boxes, track ids and confidence drawn on the faces (the paper's upload page)."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = path, fps
        self.container = self.stream = None  # opened at the first frame, when its size is known

    def _open(self, width: int, height: int) -> None:
        import av

        # faststart: the index goes first, so a browser can play the file while it downloads
        self.container = av.open(str(self.path), "w", options={"movflags": "faststart"})
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self.stream = self.container.add_stream(codec, rate=max(1, round(self.fps)))
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"

    def write(self, rgb: np.ndarray, faces) -> None:
        import av

        h, w = (rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2)  # yuv420p needs even sizes
        if self.container is None:
            self._open(w, h)
        img = draw_faces(np.ascontiguousarray(rgb[:h, :w]), faces)
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is None:
            return
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def scan(video: str | Path, config: ServiceConfig, engine, detector, annotate: str | Path | None = None,
         progress=None) -> dict:
    video = Path(video)
    cfg = ServiceConfig(**{**config.__dict__, "sources": (SourceConfig(str(video), "scan"),)})
    fps = _fps(video)
    tracks: dict[int, TrackSummary] = {}
    frame_scores: list[dict] = []
    writer = AnnotatedWriter(Path(annotate), fps) if annotate else None
    statuses = []

    def on_frame(frame, faces):
        usable = [f.p_fake for f in faces if f.p_fake is not None]
        frame_scores.append({"frame": frame.index, "pts": frame.pts, "p_fake": max(usable) if usable else None,
                             "faces": len(faces)})
        for f in faces:
            t = tracks.setdefault(f.track, TrackSummary(f.track, frame.index))
            t.last_frame, t.final_verdict = frame.index, f.verdict
            if f.p_fake is not None:
                t.scores.append(f.p_fake)
            if f.confidence is not None and f.verdict != "unknown":  # judged frames only, as alerts are
                t.max_confidence = max(t.max_confidence or 0.0, f.confidence)
        if writer:
            writer.write(frame.rgb, faces)
        if progress:
            progress(1)

    pipeline = Pipeline(cfg, engine, detector, lambda m: statuses.append(m) if m.type == "status" else None, on_frame)
    try:
        pipeline.start().wait()
    finally:
        pipeline.stop()
        if writer:
            writer.close()
    if pipeline.error:
        raise pipeline.error
    last = statuses[-1] if statuses else None
    if last is not None and last.state == "offline":
        raise SourceOpenError(last.detail or f"{video}: could not be read")
    return _summary(video, fps, engine.card, frame_scores, tracks)


def _summary(video, fps, card, frame_scores, tracks) -> dict:
    scored = [s["p_fake"] for s in frame_scores if s["p_fake"] is not None]
    p_fake = float(np.mean(scored)) if scored else None
    # A face is fake when the service would have alerted on it: its peak rolling confidence reached the card's
    # threshold (streamdetect.scoring's rule; `evaluate` chooses the threshold on that score). Never judged: unknown.
    verdict = lambda c: "unknown" if c is None else ("fake" if reaches_alert(c, card.threshold) else "real")  # noqa: E731
    track_rows = []
    for t in sorted(tracks.values(), key=lambda t: t.track):
        p = float(np.mean(t.scores)) if t.scores else None
        track_rows.append({"track": t.track, "first_frame": t.first_frame, "last_frame": t.last_frame,
                           "frames": len(t.scores), "p_fake": _r(p), "max_confidence": _r(t.max_confidence),
                           "verdict": verdict(t.max_confidence), "final_state": t.final_verdict})
    judged = [r["verdict"] for r in track_rows if r["verdict"] != "unknown"]
    video_verdict = "fake" if "fake" in judged else ("real" if judged else "unknown")
    return {
        "format": SCAN_FORMAT,
        "video": str(video),
        "frames": len(frame_scores),
        "fps": round(fps, 3),
        "frames_with_faces": len(scored),
        "model": {"name": card.name, "backbone": card.config.backbone, "trained_on": card.training_data},
        "threshold": card.threshold,
        "p_fake": _r(p_fake),
        "verdict": video_verdict,
        "tracks": track_rows,
        "timeline": [{**s, "p_fake": _r(s["p_fake"])} for s in frame_scores],
    }


def _fps(video: Path) -> float:
    import av

    try:
        with av.open(str(video)) as c:
            rate = c.streams.video[0].average_rate if c.streams.video else None
            return float(rate) if rate else 30.0
    except (av.error.FFmpegError, OSError):
        return 30.0  # the pipeline reports the real problem


def _r(x):
    return None if x is None else round(float(x), 4)


def format_summary(result: dict) -> str:
    lines = [f"{result['video']}: {result['frames']} frames, faces in {result['frames_with_faces']}"]
    for t in result["tracks"]:
        p = "-" if t["p_fake"] is None else f"{t['p_fake']:.3f}"
        c = "-" if t["max_confidence"] is None else f"{t['max_confidence']:.3f}"
        lines.append(f"  face #{t['track']:<3} frames {t['first_frame']}-{t['last_frame']}  p_fake {p}  "
                     f"peak confidence {c}  -> {t['verdict']}")
    p = "-" if result["p_fake"] is None else f"{result['p_fake']:.3f}"
    lines.append(f"video: p_fake {p}; fake when a face's peak confidence reaches {result['threshold']:.3f} "
                 f"-> {result['verdict'].upper()}")
    return "\n".join(lines)


def write_json(result: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2) + "\n")
