"""`streamdetect scan` on real and fake clips: valid, stable JSON and an annotated video."""

import json
from importlib.resources import files

import av
import jsonschema
import numpy as np
import pytest

from streamdetect.config import ServiceConfig
from streamdetect.errors import SourceOpenError
from streamdetect.scan import scan
from tests.conftest import make_clip, shared_clip

SCAN_SCHEMA = json.loads((files("streamdetect.schema") / "scan.v1.json").read_text())


@pytest.mark.parametrize("clip", ["videos/real/ffpp_c40_youtube_183.mp4", "videos/fake/ffpp_c40_Deepfakes_183_253.mp4"])
def test_scan_real_and_fake_clips(clip, engine, detector, tmp_path):
    path = shared_clip(clip)
    out = tmp_path / "annotated.mp4"
    result = scan(path, ServiceConfig(window=10), engine, detector, annotate=out)
    jsonschema.validate(result, SCAN_SCHEMA)
    json.loads(json.dumps(result))  # plain JSON types only
    with av.open(str(path)) as c:
        n_frames = sum(1 for _ in c.decode(video=0))
    assert result["frames"] == n_frames and result["frames_with_faces"] >= 0.9 * n_frames
    assert 0 <= result["p_fake"] <= 1 and result["verdict"] in ("real", "fake")
    assert result["tracks"][0]["frames"] > 0.8 * n_frames
    expected = float(np.mean([t["p_fake"] for t in result["timeline"] if t["p_fake"] is not None]))
    assert result["p_fake"] == pytest.approx(expected, abs=1e-3)
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == n_frames
    # boxes are drawn: many pixels differ from the source far beyond compression noise
    with av.open(str(path)) as c:
        original = next(c.decode(video=0)).to_ndarray(format="rgb24")
    changed = np.abs(frames[0].astype(int) - original.astype(int)).max(axis=2) > 100
    assert changed.sum() > 300


def test_scan_without_faces(engine, detector, tmp_path):
    clip = make_clip(tmp_path / "noface.mp4", seconds=1)
    result = scan(clip, ServiceConfig(), engine, detector)
    jsonschema.validate(result, SCAN_SCHEMA)
    assert result["p_fake"] is None and result["verdict"] == "unknown" and result["tracks"] == []


def test_scan_of_a_non_video_fails_clearly(engine, detector, tmp_path):
    junk = tmp_path / "notes.mp4"
    junk.write_text("not a video")
    with pytest.raises(SourceOpenError, match="not a video FFmpeg can read"):
        scan(junk, ServiceConfig(), engine, detector)


def test_verdict_follows_the_alert_rule_not_the_mean():
    """A face is fake when its rolling confidence reached the card's threshold at some point (what the service
    alerts on, and what `evaluate` chose the threshold on), even if its mean over the whole video is lower."""
    from streamdetect.model import ModelCard
    from streamdetect.scan import TrackSummary, _summary

    card = ModelCard(threshold=0.7)
    burst = TrackSummary(1, 0, last_frame=9, scores=[0.2] * 6 + [0.9] * 4, max_confidence=0.75)
    calm = TrackSummary(2, 0, last_frame=9, scores=[0.3] * 10, max_confidence=0.35)
    unjudged = TrackSummary(3, 0, last_frame=2, scores=[0.9] * 3, max_confidence=None)
    frames = [{"frame": i, "pts": i, "p_fake": 0.5, "faces": 3} for i in range(10)]
    result = _summary("v.mp4", 25.0, card, frames, {1: burst, 2: calm, 3: unjudged})
    jsonschema.validate(result, SCAN_SCHEMA)
    assert [t["verdict"] for t in result["tracks"]] == ["fake", "real", "unknown"]
    assert result["tracks"][0]["p_fake"] < card.threshold and result["verdict"] == "fake"
    result = _summary("v.mp4", 25.0, card, frames, {2: calm})
    assert result["verdict"] == "real"
