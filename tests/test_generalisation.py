"""Issue 9's training parts: the frame-level head, the crop styles, manifests (reading and fetching by sha256),
generator-balanced batches, leave-one-family-out and the motion cues."""

import functools
import hashlib
import http.server
import json
import threading

import numpy as np
import pytest
import torch

from streamdetect.engines import load_engine
from streamdetect.errors import DatasetError
from streamdetect.export import export_model
from streamdetect.faces.crop import align_crop
from streamdetect.faces.types import Box, Detection
from streamdetect.model import load_checkpoint, save_checkpoint
from streamdetect.model.card import ModelCard, ModelConfig
from streamdetect.training.config import load_config
from streamdetect.training.data import load_clips, split_clips
from streamdetect.training.manifest import fetch_manifest, read_manifest_tsv, source_url
from streamdetect.training.readers import _read_tsv, read_dataset
from streamdetect.training.train import Trainer
from tests.conftest import small_model
from tests.support.prepared import make_prepared

TINY = {"model": {"backbone": "mobilenet_v2", "dropout": 0.0, "temporal": "none"}, "pretrained": False,
        "lr": 1e-3, "batch_size": 8, "seq_len": 1, "val_every": 2, "checkpoint_every": 1,
        "augment": {"h264": 0.0}, "threads": 2}


# -- frame-level head ------------------------------------------------------------------------------------------

def test_frame_level_model_exports_and_serves_like_torch(tmp_path):
    model = small_model(hidden=1, temporal="none")
    assert not list(model.lstm.parameters())  # no recurrent weights at all
    export_model(model, tmp_path)  # validated against torch, state passed through
    engine = load_engine(tmp_path, backend="onnxruntime")
    crops = torch.randint(0, 256, (3, 112, 112, 3), dtype=torch.uint8)
    with torch.no_grad():
        want = model.probabilities(model(crops[:, None]))[:, 0, 1].numpy()
    state = None
    for _ in range(3):  # the verdict of a frame does not depend on earlier frames
        p, state = engine.step(engine.encode(crops.numpy()), state)
        np.testing.assert_allclose(p, want, atol=1e-4)
    assert state[0].shape == (3, 1) and not state[0].any()
    assert want.std() > 1e-4


def test_frame_level_checkpoint_round_trips(tmp_path):
    model = small_model(hidden=1, temporal="none")
    save_checkpoint(model, tmp_path / "m.safetensors")
    again = load_checkpoint(tmp_path / "m.safetensors")
    assert again.card.config.temporal == "none" and again.card.config.crop == "box"
    x = torch.randint(0, 256, (2, 2, 112, 112, 3), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), model.eval()(x))


def test_cards_from_before_crop_styles_load_as_aligned():
    raw = json.loads(ModelCard(config=ModelConfig(hidden_size=8)).to_json())
    del raw["config"]["crop"], raw["config"]["temporal"]
    card = ModelCard.from_json(json.dumps(raw))
    assert (card.config.crop, card.config.temporal) == ("aligned", "lstm")
    with pytest.raises(ValueError, match="unknown crop style 'tight'"):
        ModelConfig(crop="tight")


def test_box_crop_is_not_rotated_and_aligned_crop_is():
    # A bright bar along the eye line of a face rolled by 30 degrees: "aligned" levels it, "box" keeps the roll.
    frame = np.zeros((200, 200, 3), np.uint8)
    angle = np.radians(30)
    eyes = np.array([[100 - 30 * np.cos(angle), 100 - 30 * np.sin(angle)],
                     [100 + 30 * np.cos(angle), 100 + 30 * np.sin(angle)]])
    import cv2
    cv2.line(frame, tuple(map(int, eyes[0])), tuple(map(int, eyes[1])), (255, 255, 255), 5)
    det = Detection(Box(60, 60, 140, 140), 0.9, eyes.astype(np.float32))
    rows = lambda crop: np.nonzero(crop[..., 0].max(1) > 128)[0]  # noqa: E731
    assert np.ptp(rows(align_crop(frame, det, 112, style="aligned"))) < 12  # levelled: a thin horizontal bar
    assert np.ptp(rows(align_crop(frame, det, 112, style="box"))) > 30  # still rolled


def test_mouth_crop_is_centred_on_the_mouth_keypoint_and_falls_back_to_the_lower_box():
    # A white disc at the mouth keypoint (BlazeFace keypoint 3) of a 100 px face box: the mouth crop puts it in the
    # middle and enlarges it (0.75 x the box side instead of 1.3x); without keypoints it looks 1/4 below the centre.
    import cv2
    frame = np.zeros((300, 300, 3), np.uint8)
    cv2.circle(frame, (150, 185), 6, (255, 255, 255), -1)
    kps = np.array([[130, 130], [170, 130], [150, 155], [150, 185], [105, 140], [195, 140]], np.float32)
    centre = lambda crop: np.argwhere(crop[..., 0] > 128).mean(0)  # noqa: E731  (row, col)
    area = lambda crop: int((crop[..., 0] > 128).sum())  # noqa: E731
    mouth = align_crop(frame, Detection(Box(100, 100, 200, 200), 0.9, kps), 112, style="mouth")
    assert np.abs(centre(mouth) - 55.5).max() < 2
    box = align_crop(frame, Detection(Box(100, 100, 200, 200), 0.9, kps), 112, style="box")
    assert area(mouth) > 2.5 * area(box)
    fallback = align_crop(frame, Detection(Box(100, 110, 200, 210), 0.9, None), 112, style="mouth")
    assert np.abs(centre(fallback) - 55.5).max() < 2  # box centre 160 + 25 = 185


# -- manifests ---------------------------------------------------------------------------------------------------

def _write(path, header, rows):
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    return path


def test_manifest_reads_families_identities_and_categories(tmp_path):
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.jpg"):
        (tmp_path / name).write_bytes(b"x")
    m = _write(tmp_path / "mix.tsv", ("file", "label", "family", "identity", "category"),
               [("a.mp4", "fake", "Hallo", "p1", ""), ("b.mp4", "fake", "Deepfakes", "p2", ""),
                ("c.mp4", "real", "my-reals", "p1", ""), ("d.jpg", "fake", "MyGAN", "p3", "synthesis")])
    items = read_dataset(m)  # a .tsv is a manifest, whatever --layout auto finds
    assert [(i.family, i.generator, i.kind) for i in items] == [
        ("animation", "Hallo", "video"), ("blend", "Deepfakes", "video"), ("real", "my-reals", "video"),
        ("synthesis", "MyGAN", "image")]
    assert items[0].identity == items[2].identity == "p1"


@pytest.mark.parametrize("header, rows, message", [
    (("file", "label", "family"), [("a.mp4", "fake", "X")], "lacks the column.*identity"),
    (("file", "label", "family", "identity"), [("a.mp4", "maybe", "X", "p")], "label 'maybe'"),
    (("file", "label", "family", "identity"), [("a.mp4", "fake", "X", "")], "identity column is empty"),
    (("file", "label", "family", "identity"), [("gone.mp4", "fake", "X", "p")], "missing: .*gone.mp4"),
    (("file", "label", "family", "identity", "category"), [("a.mp4", "fake", "X", "p", "deep")], "category 'deep'"),
])
def test_bad_manifests_are_refused_with_the_fix(tmp_path, header, rows, message):
    (tmp_path / "a.mp4").write_bytes(b"x")
    with pytest.raises(DatasetError, match=message):
        read_manifest_tsv(_write(tmp_path / "m.tsv", header, rows))


def test_shipped_manifests_are_complete_and_distinct(tmp_path):
    """Every manifest in examples/manifests reads as a training set (placeholders stand in for the media), and
    every row is fetchable and checkable: a GitHub source at a 40-hex commit and a sha256 that no other row of any
    manifest has, under a file name no other row of its media folder uses (round5_*, round6_* share one folder each)."""
    import re
    from pathlib import Path

    manifests = sorted((Path(__file__).parents[1] / "examples" / "manifests").glob("*.tsv"))
    assert {m.stem for m in manifests} >= {"round2", "round3", "round4", "round5_swap", "round5_anim", "round6_swap",
                                          "round6_lipsync", "round6_anim", "round7"}
    hashes, files = {}, {}
    for manifest in manifests:
        media = tmp_path / manifest.stem.split("_")[0]  # the media folder fetch-manifest fills (README)
        rows = _read_tsv(manifest, ("file", "sha256", "commit"))
        for row in rows:
            where = f"{manifest.name}: {row['file']}"
            assert source_url(row) and re.fullmatch(r"[0-9a-f]{40}", row["commit"]), where
            assert re.fullmatch(r"[0-9a-f]{64}", row["sha256"]) and hashes.setdefault(row["sha256"], where) == where
            assert files.setdefault(media / row["file"], where) == where
            (media / row["file"]).parent.mkdir(parents=True, exist_ok=True)
            (media / row["file"]).write_bytes(b"")
        items = read_manifest_tsv(manifest, root=media)
        # every round is a test set with both classes, except round10r: real footage added to training only
        labels = {0} if manifest.stem == "round10r" else {0, 1}
        assert {i.label for i in items} == labels and len({i.path for i in items}) == len(rows), manifest.name


@pytest.fixture
def http_folder(tmp_path):
    """A real HTTP server on port 0 serving tmp_path/served (as GitHub raw would serve repo/commit/path)."""
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_manifest_downloads_checks_sha256_and_resumes(tmp_path, http_folder):
    served, base = http_folder
    blob = b"not really a video, but bytes with a hash"
    (served / "owner" / "repo" / "abc123" / "clips").mkdir(parents=True)
    (served / "owner" / "repo" / "abc123" / "clips" / "x.mp4").write_bytes(blob)
    good = hashlib.sha256(blob).hexdigest()
    header = ("file", "label", "family", "identity", "repo", "commit", "path", "sha256")
    m = _write(tmp_path / "m.tsv", header, [("fake/x.mp4", "fake", "F", "p", "owner/repo", "abc123", "clips/x.mp4", good)])
    out = tmp_path / "media"
    assert fetch_manifest(m, out, base_url=base, progress=False)["downloaded"] == 1
    assert (out / "fake" / "x.mp4").read_bytes() == blob
    assert fetch_manifest(m, out, base_url=base, progress=False)["present"] == 1  # rerun: kept, not downloaded

    bad = _write(tmp_path / "bad.tsv", header, [("fake/y.mp4", "fake", "F", "p", "owner/repo", "abc123", "clips/x.mp4", "0" * 64)])
    with pytest.raises(DatasetError, match="sha256 mismatch"):
        fetch_manifest(bad, out, base_url=base, progress=False)
    assert not (out / "fake" / "y.mp4").exists() and not (out / "fake" / "y.mp4.part").exists()
    gone = _write(tmp_path / "gone.tsv", header, [("fake/z.mp4", "fake", "F", "p", "owner/repo", "abc123", "nope.mp4", good)])
    with pytest.raises(DatasetError, match="404"):
        fetch_manifest(gone, out, base_url=base, progress=False)


# -- batches and leave-one-family-out -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("prepared"), reals=6, fakes=6)


def test_holdout_stays_out_of_training_and_validation_and_is_scored_against_unseen_reals(prepared, tmp_path):
    cfg = load_config(None, **{**TINY, "data": [str(prepared)], "out": str(tmp_path / "run"),
                               "holdout": ["Swap"], "batch_size": 64})
    trainer = Trainer(cfg, progress=False)
    assert not any(c.method == "Swap" for c in trainer.train_clips + trainer.val_clips)
    assert {c.method for c in trainer.holdout_clips} == {"Swap"}
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert set(split["holdout_eval"]) >= set(split["holdout"]) and len(split["holdout_eval"]) > len(split["holdout"])
    frames, _, labels = trainer.sampler.batch(0)
    assert frames.shape == (64, 1, 112, 112, 3) and labels.sum() == 32


def test_unknown_holdout_names_what_exists(prepared):
    clips = load_clips([prepared], 112)
    with pytest.raises(DatasetError, match="holdout names \\['Halo'\\].*Reenact"):
        split_clips(clips, 0.2, 0, ["Halo"])


def test_lofo_scores_each_held_out_family_with_a_bootstrap_interval(prepared, tmp_path):
    from streamdetect.training.lofo import run_lofo

    cfg = load_config(None, **{**TINY, "data": [str(prepared)], "steps": 2, "val_fraction": 0.3})
    results = run_lofo(cfg, {"swap": ("Swap",)}, tmp_path / "lofo", progress=False)
    fam = results["swap"]["families"]["Swap"]
    assert fam["n_fake"] == 3 and fam["n_real"] >= 1
    assert fam["ci95"][0] <= fam["auc"] <= fam["ci95"][1]
    assert "| swap | Swap | 3 |" in (tmp_path / "lofo" / "lofo.md").read_text()
    assert (tmp_path / "lofo" / "lofo.png").stat().st_size > 1000


def test_lofo_fold_without_unseen_fakes_is_refused(prepared, tmp_path):
    from streamdetect.training.lofo import run_lofo

    cfg = load_config(None, **{**TINY, "data": [str(prepared)], "steps": 1, "val_fraction": 0.3})
    with pytest.raises(DatasetError, match="one class only"):
        run_lofo(cfg, {"reals": ("real-synthetic",)}, tmp_path / "lofo", progress=False)


def test_bootstrap_interval_brackets_the_auc_and_narrows_with_data():
    from streamdetect.training.metrics import bootstrap_auc_ci, roc_auc

    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 400):
        y = np.r_[np.zeros(n), np.ones(n)]
        s = np.r_[rng.normal(0, 1, n), rng.normal(1, 1, n)]
        lo, hi = bootstrap_auc_ci(y, s)
        assert lo < roc_auc(y, s) < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2
    assert np.isnan(bootstrap_auc_ci([0, 0], [0.1, 0.2])[0])


def test_paired_auc_difference_is_zero_for_the_same_model_and_finds_a_deciding_real():
    from streamdetect.training.metrics import paired_auc_difference

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(12), np.ones(40)]
    a = np.r_[rng.normal(0, 1, 12), rng.normal(1.5, 1, 40)]
    same = paired_auc_difference(y, a, a)
    assert same["diff"] == 0 and same["ci"] == (0, 0) and same["drop_one_real"] == (0, 0)
    # the other model agrees except that it scores one real above every fake: worse, and that real decides it
    b = a.copy()
    b[0] = a.max() + 1
    worse = paired_auc_difference(y, a, b)
    assert worse["diff"] < 0 and worse["ci"][0] < worse["diff"] <= worse["ci"][1] <= 0
    assert worse["drop_one_real"][1] == 0  # leaving that real out, the two models rank alike
    one_real = paired_auc_difference([0, 1, 1], [0.1, 0.5, 0.6], [0.7, 0.4, 0.9])
    assert one_real["diff"] == -0.5 and np.isnan(one_real["drop_one_real"][0])
    assert np.isnan(paired_auc_difference([1, 1], [0.1, 0.5], [0.2, 0.4])["diff"])  # no reals: undefined


def test_a_big_fake_family_weighs_no_more_than_a_small_one(tmp_path):
    from pathlib import Path

    from streamdetect.training.data import BatchSampler, ClipStore
    from streamdetect.training.prepare import write_manifest
    from streamdetect.training.readers import MediaItem
    from tests.support.prepared import write_item

    rng = np.random.default_rng(0)
    for i in range(4):
        write_item(tmp_path, f"real_{i}", MediaItem(Path(f"r{i}.mp4"), 0, "original", "s", f"id{i}"), 2, rng)
    for i in range(9):  # nine clips of one generator, one of another
        method = "Big" if i < 9 - 1 else "Small"
        item = MediaItem(Path(f"f{i}.mp4"), 1, method, "s", f"id{i % 4}", family="animation")
        write_item(tmp_path, f"fake_{i}", item, 2, rng)
    write_manifest(tmp_path)
    clips = load_clips([tmp_path], 112)
    share = {}
    for balance in (True, False):
        cfg = load_config(None, **{**TINY, "fake_mix": {"animation": 1.0}, "sbi": {"enabled": False},
                                   "balance_generators": balance})
        sampler = BatchSampler(clips, cfg, ClipStore(112))
        rng = np.random.default_rng(0)
        drawn = [sampler.choose(1, rng)[0].generator for _ in range(1000)]
        share[balance] = drawn.count("Small") / len(drawn)
    assert 0.45 < share[True] < 0.55 and share[False] < 0.2  # uniform over clips: 1 in 9


def test_match_reals_pairs_each_dataset_fake_with_a_real_of_its_collection(tmp_path, monkeypatch):
    """match_reals: the real after a dataset fake comes from the fake's collection (so its codec is no cue); a
    collection with too few reals, and self-blended fakes, leave the real to the ordinary mix."""
    from pathlib import Path

    from streamdetect.training.data import MATCH_MIN, BatchSampler, ClipStore
    from streamdetect.training.prepare import write_manifest
    from streamdetect.training.readers import MediaItem
    from tests.support.prepared import write_item

    rng = np.random.default_rng(0)
    sources = {"ffpp": MATCH_MIN, "talking": 8, "tiny": MATCH_MIN - 1}  # reals per collection
    for source, n in sources.items():
        for i in range(n):
            write_item(tmp_path, f"real_{source}_{i}", MediaItem(Path(f"{source}{i}.mp4"), 0, "original", source,
                                                                f"{source}{i}"), 2, rng)
        item = MediaItem(Path(f"{source}_fake.mp4"), 1, f"Gen-{source}", source, f"{source}0", family="blend")
        write_item(tmp_path, f"fake_{source}", item, 2, rng)
    write_manifest(tmp_path)
    clips = load_clips([tmp_path], 112)
    cfg = load_config(None, **{**TINY, "fake_mix": {"blend": 1.0}, "sbi": {"enabled": False}, "match_reals": True})
    sampler = BatchSampler(clips, cfg, ClipStore(112))
    by_key = {c.key: c for c in clips}
    for fake_source in sources:
        fake = by_key[f"fake_{fake_source}"]
        drawn = [sampler.matched_real(fake, "blend", np.random.default_rng(i)) for i in range(50)]
        if fake_source == "tiny":
            assert drawn == [None] * 50  # too few of its own: the ordinary real mix decides
        else:
            assert {c.item.source_dataset for c in drawn} == {fake_source} and len({c.key for c in drawn}) > 1
    assert sampler.matched_real(by_key["real_talking_0"], "sbi", rng) is None
    # In a batch every real right after a matched fake is of that fake's collection (frames are not needed here).
    drawn_order = []
    monkeypatch.setattr("streamdetect.training.data.make_sample",
                        lambda store, clip, *a, **k: (drawn_order.append(clip), np.zeros(1), None, clip.label)[1:])
    sampler.batch(0)
    pairs = list(zip(drawn_order[::2], drawn_order[1::2]))
    assert len(pairs) == TINY["batch_size"] // 2 and all(f.label == 1 and r.label == 0 for f, r in pairs)
    assert all(r.item.source_dataset == f.item.source_dataset for f, r in pairs if f.item.source_dataset != "tiny")


# -- serving sees what training saw -------------------------------------------------------------------------------

def test_scan_scores_the_crops_prepare_made_for_training(tmp_path, detector):
    """The bundled sample through `prepare` (training) and through `scan` (the live pipeline) with a frame-level
    box-crop model: on the frames where the service ran its plain detector, both paths crop the same face the same
    way, so the per-frame scores agree. (Other frames use tracker-predicted or tiled boxes a few pixels away; the
    `jitter` augmentation trains for that.)"""
    import shutil

    from streamdetect.config import FacesConfig, ServiceConfig
    from streamdetect.scan import scan
    from streamdetect.service import sample_clip
    from streamdetect.training.prepare import PrepareConfig, prepare_dataset

    (tmp_path / "data" / "real").mkdir(parents=True)
    shutil.copy(sample_clip(), tmp_path / "data" / "real" / "sample.mp4")
    prepare_dataset(tmp_path / "data", tmp_path / "prepared", "folders",
                    PrepareConfig(frames=60, workers=1, crop="box"), progress=False)
    item = next((tmp_path / "prepared" / "items").iterdir())
    crops, numbers = np.load(item / "crops_112.npy"), np.load(item / "frames.npy")

    model = small_model(hidden=1, temporal="none")
    export_model(model, tmp_path / "export")
    engine = load_engine(tmp_path / "export", backend="onnxruntime")
    with torch.no_grad():
        trained = model.probabilities(model(torch.from_numpy(crops)[:, None]))[:, 0, 1].numpy()
    # skip_steady off: every 3rd frame is then a whole-frame detector run (the sample is 360p: no tiles either)
    result = scan(tmp_path / "data" / "real" / "sample.mp4",
                  ServiceConfig(faces=FacesConfig(detect_every=3, skip_steady=False)), engine, detector)
    served = {t["frame"]: t["p_fake"] for t in result["timeline"] if t["p_fake"] is not None}
    # Detector frames (every 3rd), except the service's tiled passes (every 15th: other boxes for the same face).
    detect_frames = [i for i, n in enumerate(numbers) if n % 3 == 0 and n % 15 and n in served]
    assert len(detect_frames) >= 12 and trained.std() > 1e-3
    np.testing.assert_allclose([served[numbers[i]] for i in detect_frames], trained[detect_frames], atol=2e-3)


def test_box_jitter_moves_every_frame_of_a_clip_the_same_way():
    from streamdetect.training.augment import AugmentConfig, augment_clip

    rng = np.random.default_rng(0)
    frame = np.zeros((112, 112, 3), np.uint8)
    frame[40:72, 40:72] = 255
    clip = np.stack([frame] * 4)
    only_jitter = AugmentConfig(hflip=0, colour=0, blur=0, downscale=0, noise=0, jpeg=0, h264=0, jitter=1.0,
                                jitter_shift=0.1)
    out = augment_clip(clip, rng, only_jitter)
    assert not np.array_equal(out[0], frame) and all(np.array_equal(f, out[0]) for f in out)
    ys, xs = np.nonzero(out[0, ..., 0] > 128)
    assert abs(xs.mean() - 55.5) <= 0.1 * 112 + 2 and abs(ys.mean() - 55.5) <= 0.1 * 112 + 2
    # Off (the default): the same random stream, so older recipes augment exactly as before.
    a = augment_clip(clip, np.random.default_rng(1), AugmentConfig())
    b = augment_clip(clip, np.random.default_rng(1), AugmentConfig(jitter=0.0, jitter_shift=0.2))
    assert np.array_equal(a, b)
