"""`streamdetect prepare`: real decoding, real MediaPipe detection and face mesh, the service's crop."""

import json
import os
from importlib.resources import files

import av
import numpy as np
import pytest

from streamdetect.errors import DatasetError
from streamdetect.training.prepare import PrepareConfig, prepare_dataset, read_frames, read_manifest
from streamdetect.service import sample_clip
from tests.conftest import FFPP_FAKE, FFPP_REAL, make_clip, shared_clip
from tests.support.clips import FACE_AWAY, phone_clip, sample_excerpt, sample_frame


def face_clip(path, frames=12, flip=False):
    """A generated H.264 clip of a real face: the bundled public-domain sample's first frame, panning."""
    with av.open(str(files("streamdetect.samples") / "sample.mp4")) as c:
        still = next(c.decode(video=0)).to_ndarray(format="rgb24")
    if flip:
        still = np.ascontiguousarray(still[:, ::-1])
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for i in range(frames):
            x = 200 + 4 * i
            view = np.ascontiguousarray(still[60:60 + 360 * 2:2, x:x + 640 * 2:2][:360, :640])
            for packet in stream.encode(av.VideoFrame.from_ndarray(view, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def folder_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    (root / "real").mkdir()
    (root / "fake" / "Mirror").mkdir(parents=True)
    face_clip(root / "real" / "face.mp4")
    face_clip(root / "fake" / "Mirror" / "face_flipped.mp4", flip=True)
    make_clip(root / "real" / "no_face.mp4", seconds=0.5, size=(160, 120))
    (root / "fake" / "Mirror" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    return root


def test_prepare_a_generated_folder_dataset(folder_dataset, tmp_path):
    out = tmp_path / "prepared"
    report = prepare_dataset(folder_dataset, out, config=PrepareConfig(frames=8, workers=1), progress=False)
    assert report.prepared == 2 and report.frames == 16
    failures = dict(report.failed)
    assert "no face" in failures[str(folder_dataset / "real" / "no_face.mp4")]
    assert "cannot be" in failures[str(folder_dataset / "fake" / "Mirror" / "broken.mp4")]
    rows = {r["key"]: r for r in read_manifest(out)}
    assert set(rows) == {"real_face", "fake_Mirror_face_flipped"}
    fake = rows["fake_Mirror_face_flipped"]
    assert (fake["label"], fake["method"], fake["frames"]) == (1, "Mirror", 8)
    crops = np.load(os.path.join(rows["real_face"]["folder"], "crops_112.npy"))
    marks = np.load(os.path.join(rows["real_face"]["folder"], "landmarks.npy"))
    assert crops.shape == (8, 112, 112, 3) and crops.dtype == np.uint8
    assert marks.shape == (8, 468, 3) and np.isfinite(marks).all()
    # the aligned crop puts the face in the middle with level eyes (mesh 33 / 263: outer eye corners)
    assert 0.2 < marks[..., :2].mean() < 0.8
    assert np.abs(marks[:, 33, 1] - marks[:, 263, 1]).max() < 0.05
    assert np.abs(marks[:, 33, 0] - marks[:, 263, 0]).min() > 0.15
    assert len((out / "errors.jsonl").read_text().splitlines()) == 2

    # rerun: finished items are kept, not redone
    before = os.path.getmtime(os.path.join(rows["real_face"]["folder"], "meta.json"))
    again = prepare_dataset(folder_dataset, out, config=PrepareConfig(frames=8, workers=1), progress=False)
    assert again.skipped_existing == 2 and again.prepared == 0
    assert os.path.getmtime(os.path.join(rows["real_face"]["folder"], "meta.json")) == before
    with pytest.raises(DatasetError, match="other settings"):
        prepare_dataset(folder_dataset, out, config=PrepareConfig(frames=9, workers=1), progress=False)


def test_prepare_in_parallel_at_two_sizes(folder_dataset, tmp_path):
    out = tmp_path / "prepared"
    report = prepare_dataset(folder_dataset, out, config=PrepareConfig(sizes=(112, 224), frames=4, workers=2),
                             progress=False)
    assert report.prepared == 2
    folder = read_manifest(out)[0]["folder"]
    assert np.load(os.path.join(folder, "crops_224.npy")).shape == (4, 224, 224, 3)


@pytest.fixture(params=["sample", "ffpp"])
def real_and_fake(request, tmp_path):
    """(real clip, fake clip, the fake's method, frames of the real clip that have no face).
    sample: the bundled clip itself (720p, 12 s; the face is partly or wholly out of frame on frames 154-204) and
    a mirrored, re-encoded excerpt of it standing in for a fake. ffpp: a FaceForensics++ original and a Deepfakes clip made
    from it (shared research data, read in place through links, never copied)."""
    if request.param == "sample":
        mirrored = sample_excerpt(tmp_path / "sample_mirrored.mp4", frames=150, flip=True)
        return sample_clip(), mirrored, "Mirror", FACE_AWAY
    return shared_clip(FFPP_REAL), shared_clip(FFPP_FAKE), "Deepfakes", range(0)


def test_prepare_a_real_and_a_fake_clip(real_and_fake, tmp_path):
    """Full-length clips through the folder layout, frames spread over each video."""
    real, fake, method, faceless = real_and_fake
    root = tmp_path / "ds"
    (root / "real").mkdir(parents=True)
    (root / "fake" / method).mkdir(parents=True)
    os.symlink(real, root / "real" / real.name)
    os.symlink(fake, root / "fake" / method / fake.name)
    config = PrepareConfig(frames=12, sampling="even", workers=1)
    report = prepare_dataset(root, tmp_path / "out", config=config, progress=False)
    assert report.prepared == 2 and not report.failed
    assert json.loads((tmp_path / "out" / "prepare.json").read_text())["frames"] == 12
    rows = {row["label"]: row for row in read_manifest(tmp_path / "out")}
    assert rows[1]["method"] == method
    for row in rows.values():
        numbers = np.load(os.path.join(row["folder"], "frames.npy"))
        marks = np.load(os.path.join(row["folder"], "landmarks.npy"))
        assert np.isfinite(marks).all() and marks.shape == (row["frames"], 468, 3)
        with av.open(str(real if row["label"] == 0 else fake)) as c:
            wanted = set(np.linspace(0, c.streams.video[0].frames - 1, 12).round().astype(int).tolist())
        # the evenly spread frames, less some without a face (skipped, as in the paper; the tiled pass may still
        # find a face on the edge of the away stretch)
        skipped = wanted - set(numbers.tolist())
        assert set(numbers.tolist()) <= wanted and skipped <= (set(faceless) if row["label"] == 0 else set())
        assert row["frames"] == len(numbers)
    if faceless:
        assert rows[0]["frames"] < 12  # the sample's away stretch really was sampled and skipped


def test_unknown_layout_and_bad_sizes_are_named(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetError, match="--layout"):
        prepare_dataset(tmp_path / "stuff", tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="multiple of 16 from 96 to 320"):
        PrepareConfig(sizes=(100,))


def test_phone_video_frames_are_prepared_upright(tmp_path):
    """`prepare` and the live source share one decode rule (sources/frames.py): a portrait phone clip's display
    rotation is applied before face detection, so training crops match what serving sees."""
    import cv2

    (_, rgb), *_ = read_frames(phone_clip(tmp_path / "phone.mp4"), PrepareConfig())
    upright = cv2.resize(sample_frame(0), (320, 180), interpolation=cv2.INTER_AREA)
    assert rgb.shape == (180, 320, 3) and np.abs(rgb.astype(int) - upright).mean() < 6
