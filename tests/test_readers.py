"""Dataset readers on tiny synthetic layouts (empty files: readers never decode) and on ../shared/data."""

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from streamdetect.errors import DatasetError
from streamdetect.training.readers import (
    LAYOUTS, MediaItem, detect_layout, method_family, read_celebdf, read_dataset, read_dfdc,
    read_faceforensics, read_folders, read_shared, split_by_identity,
)
from tests.conftest import DATA, shared_data_absent


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def by_name(items):
    return {i.path.name: i for i in items}


# -- FaceForensics++ ----------------------------------------------------------------------------------------


def make_ffpp(root: Path, compressions=("c23",)) -> Path:
    for c in compressions:
        touch(root / "original_sequences/youtube" / c / "videos", "000.mp4", "003.mp4", "071.mp4", "054.mp4")
        touch(root / "original_sequences/actors" / c / "videos", "01__kitchen_pan.mp4", "02__kitchen_pan.mp4")
        touch(root / "manipulated_sequences/Deepfakes" / c / "videos", "000_003.mp4", "003_000.mp4", "071_054.mp4")
        touch(root / "manipulated_sequences/NeuralTextures" / c / "videos", "054_071.mp4")
        touch(root / "manipulated_sequences/DeepFakeDetection" / c / "videos", "01_02__kitchen_pan__ABC123.mp4")
    (root / "manipulated_sequences/Deepfakes/masks/videos").mkdir(parents=True)  # not a compression
    return root


def test_faceforensics_labels_identities_and_methods(tmp_path):
    items = by_name(read_faceforensics(make_ffpp(tmp_path)))
    assert len(items) == 11
    real, fake = items["000.mp4"], items["000_003.mp4"]
    assert (real.label, real.method, real.family, real.identity, real.related) == (
        0, "original", "real", "000", ("000",))
    assert (fake.label, fake.method, fake.family) == (1, "Deepfakes", "blend")
    assert (fake.identity, fake.related) == ("000", ("000", "003"))  # target first: its video is what we see
    assert items["003_000.mp4"].identity == "003"
    dfd = items["01_02__kitchen_pan__ABC123.mp4"]
    assert (dfd.method, dfd.identity, dfd.related) == ("DeepFakeDetection", "01", ("01", "02"))
    assert items["01__kitchen_pan.mp4"].identity == "01"
    assert all(i.source_dataset == "FaceForensics++" and i.kind == "video" and i.split is None for i in items.values())


def test_faceforensics_compression_selection_and_error(tmp_path):
    root = make_ffpp(tmp_path, ("c23", "c40"))
    touch(root / "manipulated_sequences/FaceShifter/c40/videos", "000_003.mp4")  # only downloaded at c40
    c40 = read_faceforensics(root, compression="c40")
    assert {i.path.parts[-3] for i in c40} == {"c40"}
    assert "FaceShifter" in {i.method for i in c40}
    c23 = read_faceforensics(root)  # default c23; FaceShifter lacks it and is skipped, not an error
    assert {i.path.parts[-3] for i in c23} == {"c23"} and "FaceShifter" not in {i.method for i in c23}
    with pytest.raises(DatasetError, match=r"'raw'.*available compressions: c23, c40"):
        read_faceforensics(root, compression="raw")


def test_faceforensics_splits_json(tmp_path):
    root = make_ffpp(tmp_path)
    (root / "splits").mkdir()
    (root / "splits/train.json").write_text(json.dumps([["000", "003"]]))
    (root / "splits/val.json").write_text(json.dumps([["071", "054"]]))
    items = by_name(read_faceforensics(root))
    assert {n: items[n].split for n in ("000.mp4", "003.mp4", "000_003.mp4", "003_000.mp4")} == dict.fromkeys(
        ("000.mp4", "003.mp4", "000_003.mp4", "003_000.mp4"), "train")
    assert {items[n].split for n in ("071.mp4", "054.mp4", "071_054.mp4", "054_071.mp4")} == {"val"}
    assert items["01__kitchen_pan.mp4"].split is None  # actors are in no official split

    train, val = split_by_identity(items.values(), seed=3)  # official train/val kept; actors split by person
    assert {i.path.name for i in val} >= {"071.mp4", "054.mp4", "071_054.mp4", "054_071.mp4"}
    assert {i.path.name for i in train} >= {"000.mp4", "003.mp4", "000_003.mp4", "003_000.mp4"}
    actors = [i for i in train + val if i.path.name.startswith(("01", "02"))]
    assert len({i in val for i in actors}) == 1  # 01, 02 and their swap stay together


def test_faceforensics_conflicting_splits(tmp_path):
    root = make_ffpp(tmp_path)
    (root / "splits").mkdir()
    (root / "splits/train.json").write_text(json.dumps([["000", "003"]]))
    (root / "splits/test.json").write_text(json.dumps([["003", "071"]]))
    with pytest.raises(DatasetError, match="'003' in both train and test"):
        read_faceforensics(root)


# -- Celeb-DF -----------------------------------------------------------------------------------------------


def make_celebdf(root: Path, listing: str | None = None) -> Path:
    touch(root, "Celeb-real/id0_0000.mp4", "Celeb-real/id16_0001.mp4", "YouTube-real/00170.mp4",
          "Celeb-synthesis/id0_id16_0000.mp4", "Celeb-synthesis/id16_id0_0001.mp4")
    if listing is not None:
        (root / "List_of_testing_videos.txt").write_text(listing)
    return root


def test_celebdf_identities_without_test_list(tmp_path):
    items = by_name(read_celebdf(make_celebdf(tmp_path)))
    fake = items["id0_id16_0000.mp4"]
    assert (fake.label, fake.method, fake.family, fake.identity, fake.related) == (
        1, "Celeb-synthesis", "blend", "id0", ("id0", "id16"))
    assert (items["id0_0000.mp4"].identity, items["id0_0000.mp4"].label) == ("id0", 0)
    assert items["00170.mp4"].label == 0 and items["00170.mp4"].identity == "youtube-00170"
    assert all(i.split is None and i.source_dataset == "Celeb-DF-v2" for i in items.values())


def test_celebdf_inverted_test_labels(tmp_path):
    root = make_celebdf(tmp_path, "1 YouTube-real/00170.mp4\n0 Celeb-synthesis/id0_id16_0000.mp4\n\n")
    items = by_name(read_celebdf(root))
    assert (items["00170.mp4"].label, items["00170.mp4"].split) == (0, "test")  # listed 1 means REAL
    assert (items["id0_id16_0000.mp4"].label, items["id0_id16_0000.mp4"].split) == (1, "test")
    assert {items[n].split for n in ("id0_0000.mp4", "id16_0001.mp4", "id16_id0_0001.mp4")} == {"train"}


def test_celebdf_contradiction_and_missing(tmp_path):
    with pytest.raises(DatasetError, match=r"line 1 .*marks Celeb-real/id0_0000.mp4 as fake.*1 means real"):
        read_celebdf(make_celebdf(tmp_path / "a", "0 Celeb-real/id0_0000.mp4\n"))
    with pytest.raises(DatasetError, match="missing: .*id9_0009.mp4"):
        read_celebdf(make_celebdf(tmp_path / "b", "1 Celeb-real/id9_0009.mp4\n"))


# -- DFDC ---------------------------------------------------------------------------------------------------


def make_dfdc(root: Path) -> Path:
    part = root / "dfdc_train_part_0"
    touch(part, "aaa.mp4", "bbb.mp4", "ccc.mp4")
    (part / "metadata.json").write_text(json.dumps({
        "aaa.mp4": {"label": "REAL", "split": "train", "original": None},
        "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
        "ccc.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
    }))
    test = root / "test"
    touch(test, "videos/ttt.mp4", "uuu.mp4")
    (test / "labels.csv").write_text("filename,label\nttt.mp4,1\nuuu.mp4,0\n")
    return root


def test_dfdc_metadata_and_labels_csv(tmp_path):
    items = by_name(read_dfdc(make_dfdc(tmp_path)))
    assert len(items) == 5
    assert (items["aaa.mp4"].label, items["aaa.mp4"].identity, items["aaa.mp4"].split) == (0, "aaa", "train")
    bbb = items["bbb.mp4"]
    assert (bbb.label, bbb.method, bbb.family, bbb.identity) == (1, "DFDC", "blend", "aaa")  # keyed by its original
    ttt, uuu = items["ttt.mp4"], items["uuu.mp4"]
    assert (ttt.label, ttt.split, ttt.path.parent.name) == (1, "test", "videos")  # found in a subfolder
    assert (uuu.label, uuu.split, uuu.method) == (0, "test", "original")
    train, val = split_by_identity(items.values(), val_fraction=0.5)
    assert not {i.path.name for i in train + val} & {"ttt.mp4", "uuu.mp4"}  # test is held out
    assert len({i in val for i in train + val}) == 1  # aaa and its two fakes are one group


def test_dfdc_errors(tmp_path):
    root = make_dfdc(tmp_path)
    (root / "dfdc_train_part_0/ccc.mp4").unlink()
    with pytest.raises(DatasetError, match="1 file.*metadata.json are missing: .*ccc.mp4"):
        read_dfdc(root)
    (root / "dfdc_train_part_0/metadata.json").write_text(json.dumps({"aaa.mp4": {"label": "MAYBE"}}))
    with pytest.raises(DatasetError, match="'MAYBE'; expected FAKE or REAL"):
        read_dfdc(root)
    with pytest.raises(DatasetError, match="no metadata.json or labels.csv"):
        read_dfdc((tmp_path / "empty").mkdir() or tmp_path / "empty")


# -- real/ + fake/ folders ----------------------------------------------------------------------------------


def test_folders_methods_kinds_and_identities(tmp_path):
    touch(tmp_path, "real/a.mp4", "real/more/b.MOV", "real/c.jpg", "real/notes.txt", "real/.hidden/d.mp4",
          "fake/x.webm", "fake/FaceSwap/y.mp4", "fake/StyleGAN2/z.png")
    (tmp_path / "identities.tsv").write_text("file\tidentity\nreal/a.mp4\tperson1\nfake/FaceSwap/y.mp4\tperson1\n")
    items = by_name(read_folders(tmp_path))
    assert set(items) == {"a.mp4", "b.MOV", "c.jpg", "x.webm", "y.mp4", "z.png"}
    assert {n: (i.label, i.method, i.family, i.kind) for n, i in items.items()} == {
        "a.mp4": (0, "original", "real", "video"), "b.MOV": (0, "original", "real", "video"),
        "c.jpg": (0, "original", "real", "image"), "x.webm": (1, "unknown", "blend", "video"),
        "y.mp4": (1, "FaceSwap", "blend", "video"), "z.png": (1, "StyleGAN2", "synthesis", "image")}
    assert items["a.mp4"].identity == items["y.mp4"].identity == "person1"
    assert items["b.MOV"].identity == "b"  # no sidecar entry: the file stem


def test_folders_one_class_is_not_an_error(tmp_path):
    touch(tmp_path, "real/a.mp4", "real/b.mp4")
    items = read_folders(tmp_path)  # SBI trains on reals only: the reader must not refuse
    assert [i.label for i in items] == [0, 0]


# -- shared research folder (synthetic) ---------------------------------------------------------------------

MANIFEST_HEADER = "file\tlabel\tkind\tmanipulation\tclaimed_source_dataset\tidentity_hint\n"


def make_shared(root: Path) -> Path:
    rows = [
        ("videos/real/ffpp_c40_youtube_183.mp4", "real", "video", "none", "FaceForensics++ (c40)", ""),
        ("videos/real/ffpp_c40_youtube_253.mp4", "real", "video", "none", "FaceForensics++ (c40)", ""),
        ("videos/fake/ffpp_c40_Deepfakes_183_253.mp4", "fake", "video", "Deepfakes", "FaceForensics++ (c40)", ""),
        ("videos/real_talking/mead_M030_a.mp4", "real", "video", "none", "MEAD", "MEAD M030"),
        ("videos/real_talking/mead_M030_b.mp4", "real", "video", "none", "MEAD", "MEAD M030"),
        ("images/fake/tpdne_fake_0.jpg", "fake", "image",
         "GAN-synthesis (StyleGAN2, thispersondoesnotexist.com)", "thispersondoesnotexist.com", ""),
    ]
    touch(root, *(r[0] for r in rows))
    (root / "MANIFEST.tsv").write_text(MANIFEST_HEADER + "".join("\t".join(r) + "\n" for r in rows))
    (root / "IDENTITY_GROUPS.tsv").write_text("file\tidentity_group\nvideos/real_talking/mead_M030_a.mp4\tmead_M030\n")
    return root


def test_shared_synthetic(tmp_path):
    items = by_name(read_shared(make_shared(tmp_path)))
    fake = items["ffpp_c40_Deepfakes_183_253.mp4"]
    assert (fake.method, fake.family, fake.identity, fake.related, fake.source_dataset) == (
        "Deepfakes", "blend", "183", ("183", "253"), "FaceForensics++")
    assert items["ffpp_c40_youtube_253.mp4"].identity == "253"
    gan = items["tpdne_fake_0.jpg"]
    assert (gan.method, gan.family, gan.kind, gan.identity, gan.source_dataset) == (
        "StyleGAN2", "synthesis", "image", "tpdne_fake_0", "shared")
    assert items["mead_M030_a.mp4"].identity == "mead_M030"  # IDENTITY_GROUPS wins
    assert items["mead_M030_b.mp4"].identity == "MEAD M030"  # else the manifest's identity_hint
    (tmp_path / "images/fake/tpdne_fake_0.jpg").unlink()
    with pytest.raises(DatasetError, match="MANIFEST.tsv are missing: .*tpdne_fake_0.jpg"):
        read_shared(tmp_path)


# -- layout detection ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout, build", [
    ("faceforensics", make_ffpp),
    ("celebdf", make_celebdf),
    ("dfdc", make_dfdc),
    ("shared", make_shared),
    ("folders", lambda root: touch(root, "real/a.mp4", "fake/b.mp4") or root),
])
def test_detect_layout_and_read_dataset(tmp_path, layout, build):
    root = build(tmp_path)
    assert detect_layout(root) == layout
    assert read_dataset(root) == LAYOUTS[layout](root)
    assert read_dataset(root, layout=layout, compression="c23") == LAYOUTS[layout](root)  # foreign options ignored


def test_dfdc_detected_with_metadata_at_top(tmp_path):
    touch(tmp_path, "a.mp4")
    (tmp_path / "metadata.json").write_text(json.dumps({"a.mp4": {"label": "REAL"}}))
    assert detect_layout(tmp_path) == "dfdc"
    assert [i.split for i in read_dataset(tmp_path)] == [None]


def test_unknown_layout_and_missing_root(tmp_path):
    touch(tmp_path, "clips/a.mp4")
    with pytest.raises(DatasetError) as err:
        detect_layout(tmp_path)
    message = str(err.value)
    for name in LAYOUTS:
        assert f"  {name}: " in message
    assert "MANIFEST.tsv" in message and "original_sequences" in message and "--layout" in message
    with pytest.raises(DatasetError, match="unknown layout 'kinetics'"):
        read_dataset(tmp_path, layout="kinetics")
    with pytest.raises(DatasetError, match="does not exist"):
        read_dataset(tmp_path / "nope")


def test_media_item_normalises_and_validates():
    item = MediaItem(Path("a.mp4"), 1, "Deepfakes", "folders", "000", ("003",), family="blend")
    assert item.related == ("000", "003")
    with pytest.raises(ValueError):
        MediaItem(Path("a.mp4"), 1, "Deepfakes", "folders", "000")  # a fake cannot be family "real"
    with pytest.raises(ValueError):
        MediaItem(Path("a.mp4"), 0, "original", "folders", "000", split="holdout")
    assert method_family("Celeb-synthesis", 1) == "blend" and method_family("StyleGAN3", 1) == "synthesis"


# -- identity-safe split ------------------------------------------------------------------------------------


def random_ffpp_like(seed: int, people: int = 60) -> list[MediaItem]:
    """Originals plus swaps between random pairs, so swaps chain people into larger groups."""
    rng = random.Random(seed)
    ids = [f"{n:03d}" for n in range(people)]
    items = [MediaItem(Path(f"o/{i}.mp4"), 0, "original", "FaceForensics++", i) for i in ids]
    for n in range(people // 2):
        t, s = rng.sample(ids, 2)
        items.append(MediaItem(Path(f"f/{t}_{s}_{n}.mp4"), 1, "Deepfakes", "FaceForensics++", t, (t, s),
                               family="blend"))
    return items


@pytest.mark.parametrize("seed", range(5))
def test_split_by_identity_never_shares_a_person(seed):
    items = random_ffpp_like(seed)
    train, val = split_by_identity(items, val_fraction=0.25, seed=seed)
    assert len(train) + len(val) == len(items) and val and train
    train_ids = {r for i in train for r in i.related}
    assert not train_ids & {r for i in val for r in i.related}
    assert {i.label for i in val} == {0, 1}
    assert split_by_identity(list(reversed(items)), val_fraction=0.25, seed=seed)[1] == [
        i for i in reversed(items) if i in val]  # deterministic: depends on the items, not their order


def test_split_by_identity_keeps_both_classes_and_size():
    # A big family of reals (one actor, many clips) must not swallow val; fakes are a minority.
    crowd = [MediaItem(Path(f"c{n}.mp4"), 0, "original", "folders", "crowd") for n in range(20)]
    reals = [MediaItem(Path(f"r{n}.mp4"), 0, "original", "folders", f"r{n}") for n in range(8)]
    fakes = [MediaItem(Path(f"f{n}.mp4"), 1, "FaceSwap", "folders", f"f{n}", family="blend") for n in range(3)]
    for seed in range(10):
        train, val = split_by_identity(crowd + reals + fakes, val_fraction=0.2, seed=seed)
        assert {i.label for i in val} == {0, 1} and {i.label for i in train} == {0, 1}
        assert 1 < len(val) <= 8 and not any(i.identity == "crowd" for i in val)


def test_split_by_identity_edge_cases():
    one = [MediaItem(Path("a.mp4"), 0, "original", "folders", "a")]
    assert split_by_identity(one) == (one, [])  # a single group stays in train
    assert split_by_identity(random_ffpp_like(0), val_fraction=0)[1] == []
    with pytest.raises(ValueError):
        split_by_identity(one, val_fraction=1.0)


def test_split_by_identity_follows_existing_splits():
    def item(name, ident, split, label=0):
        return MediaItem(Path(name), label, "original" if label == 0 else "Deepfakes", "FaceForensics++", ident,
                         split=split, family="real" if label == 0 else "blend")

    items = [item("a", "1", "train"), item("b", "2", "val"), item("c", "3", "test"),
             item("d", "2", None, 1), item("e", "9", None)]
    train, val = split_by_identity(items, val_fraction=0.5)
    names = {i.path.name: ("train" if i in train else "val") for i in train + val}
    assert names["a"] == "train" and names["b"] == "val" and "c" not in names
    assert names["d"] == "val"  # an unassigned fake of person 2 follows person 2


# -- the shared research data -------------------------------------------------------------------------------


def test_shared_research_data():
    if not (DATA / "MANIFEST.tsv").is_file():
        pytest.skip(shared_data_absent(DATA))
    items = read_dataset(DATA)
    assert detect_layout(DATA) == "shared" and len(items) == 513
    ffpp_fakes = [i for i in items if i.label == 1 and i.source_dataset == "FaceForensics++"]
    assert Counter(i.method for i in ffpp_fakes) == dict.fromkeys(
        ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"), 10)
    gan = [i for i in items if i.method == "StyleGAN2"]
    assert len(gan) == 100 and all(i.family == "synthesis" and i.kind == "image" and i.label == 1 for i in gan)
    originals = {i.identity for i in items if i.label == 0 and i.source_dataset == "FaceForensics++"}
    for fake in ffpp_fakes:
        assert fake.identity in originals and set(fake.related) <= originals, fake
    assert all(i.path.is_file() for i in items)
    assert len({i.identity for i in items if i.path.name.startswith("mead_W009")}) == 1
    train, val = split_by_identity(items)
    assert not {(i.source_dataset, r) for i in train for r in i.related} & {
        (i.source_dataset, r) for i in val for r in i.related}
    assert {i.label for i in val} == {0, 1}
