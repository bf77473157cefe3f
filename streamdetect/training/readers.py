"""Dataset readers: a dataset folder -> the videos and images to prepare, with labels and split keys.

Readers only list files; nothing is opened or decoded, so a listing of FF++ or DFDC takes seconds. Every item
carries `identity` (the key a split groups by) and `related` (every person id involved in making it), because a
detector validated on people it trained on measures memorised faces, not detection: `split_by_identity` keeps
a person, and every fake made from or with their face, on one side.

Layouts (`LAYOUTS`, chosen by `detect_layout` or by name): FaceForensics++, Celeb-DF v2, DFDC, plain
real/ + fake/ folders, and the project's shared research folder (MANIFEST.tsv). Readers accept the options of
every layout and ignore those meant for another, so a CLI can pass one set of options whatever the layout.
Readers do not insist on both classes (self-blended training uses real videos only): `train` says what it lacks.
"""

from __future__ import annotations

import csv
import json
import logging
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

from streamdetect.errors import DatasetError

log = logging.getLogger(__name__)

VIDEO_EXTS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v"})
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
SPLITS = ("train", "val", "test")

# Face swap and reenactment: a real video whose face region was replaced or re-rendered and blended back.
BLEND_METHODS = frozenset({
    "Deepfakes", "FaceSwap", "Face2Face", "NeuralTextures", "FaceShifter", "DeepFakeDetection",
    "Celeb-synthesis", "DFDC",
})
# Whole-face synthesis (no source video, no blending boundary). Matched in lower case, after BLEND_METHODS,
# so that "Celeb-synthesis" (a face swap despite its name) stays a blend.
_SYNTHESIS_HINTS = ("stylegan", "progan", "biggan", "diffusion", "gan-synthesis", "thispersondoesnotexist",
                    "synthesis")


# Categories of fakes (MediaItem.family): "blend" (a face swapped or re-rendered into a real video, with a seam),
# "synthesis" (a whole generated face, no source video) and "animation" (a real or generated portrait animated
# by audio or a driving video: talking heads, lip-sync, portrait animation; no seam, synthetic motion).
CATEGORIES = ("real", "blend", "synthesis", "animation")


def method_family(method: str, label: int, unknown: str = "blend") -> str:
    """The category of a method. Unknown fake methods count as `unknown` (blend for the dataset layouts:
    the common case for video)."""
    if label == 0:
        return "real"
    if method in BLEND_METHODS:
        return "blend"
    lowered = method.lower()
    return "synthesis" if lowered == "gan" or any(h in lowered for h in _SYNTHESIS_HINTS) else unknown


@dataclass(frozen=True)
class MediaItem:
    """One video or image to prepare. `related` always contains `identity`."""

    path: Path
    label: int                      # 0 real, 1 fake
    method: str                     # "original" for real items, else the manipulation name
    source_dataset: str             # "FaceForensics++", "Celeb-DF-v2", "DFDC", "folders", "shared"
    identity: str                   # grouping key for splits (for a fake: the target, whose video it is)
    related: tuple[str, ...] = ()   # every person id involved (target and source of a swap)
    split: str | None = None        # "train" / "val" / "test" where the dataset defines one
    kind: str = "video"             # "video" or "image"
    family: str = "real"            # category: "real", "blend", "synthesis" or "animation" (CATEGORIES)
    # What leave-one-family-out holds out: the generator family of a fake (its method unless a manifest names
    # one), the collection of a real ("real-<source dataset>" unless named).
    generator: str = ""

    def __post_init__(self):
        if self.label not in (0, 1):
            raise ValueError(f"label must be 0 (real) or 1 (fake), not {self.label!r}")
        if self.kind not in ("video", "image"):
            raise ValueError(f"kind must be 'video' or 'image', not {self.kind!r}")
        if self.family not in CATEGORIES or (self.family == "real") != (self.label == 0):
            raise ValueError(f"family {self.family!r} does not fit label {self.label}")
        if self.split not in (None, *SPLITS):
            raise ValueError(f"split must be one of {SPLITS} or None, not {self.split!r}")
        # Frozen: normalise through object.__setattr__ so `related` can be trusted by splitters.
        object.__setattr__(self, "related", tuple(dict.fromkeys((self.identity, *self.related))))
        if not self.generator:
            object.__setattr__(self, "generator", self.method if self.label else f"real-{self.source_dataset}")


def _item(path: Path, label: int, method: str, source: str, ids: Iterable[str], split: str | None = None,
          kind: str | None = None, family: str | None = None) -> MediaItem:
    ids = tuple(ids)
    return MediaItem(Path(path), label, method, source, ids[0], ids, split, kind or _kind(path) or "video",
                     family or method_family(method, label))


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "video" if suffix in VIDEO_EXTS else "image" if suffix in IMAGE_EXTS else None


def _require_dir(root) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist; check the path")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file, not a dataset folder; pass the folder that holds the dataset")
    return root


def _missing(paths: list[Path], listing: Path):
    if paths:
        shown = ", ".join(str(p) for p in paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        raise DatasetError(f"{len(paths)} file(s) listed in {listing} are missing: {shown}. Download or extract "
                           f"them, or remove them from the listing")


def _read_tsv(path: Path, required: tuple[str, ...]) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        absent = [c for c in required if c not in (reader.fieldnames or ())]
        if absent:
            raise DatasetError(f"{path} lacks the column(s) {', '.join(absent)}; its header is "
                               f"{reader.fieldnames}; expected tab-separated columns {', '.join(required)}")
        return [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]


# -- FaceForensics++ ----------------------------------------------------------------------------------------

FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter", "DeepFakeDetection")


def _ffpp_ids(stem: str) -> tuple[str, ...]:
    """Person ids in an FF++ file name, target first.

    youtube: "000" (original) or "000_003" (video 000 with the face of 003). actors / DeepFakeDetection:
    "01__kitchen_pan" (actor 01's scene) or "01_02__kitchen_pan__ABC123" (actor 01's scene, actor 02's face).
    """
    return tuple(stem.split("__", 1)[0].split("_"))


def _ffpp_splits(root: Path) -> tuple[dict, dict]:
    """splits/{train,val,test}.json (lists of id pairs) -> ({id: split}, {frozenset(pair): split})."""
    by_id, by_pair = {}, {}
    for split in SPLITS:
        path = root / "splits" / f"{split}.json"
        if not path.is_file():
            continue
        try:
            pairs = json.loads(path.read_text())
            pairs = [tuple(str(x) for x in p) for p in pairs if len(p) == 2]
        except (ValueError, TypeError) as e:
            raise DatasetError(f"{path} is not a JSON list of id pairs like [[\"071\", \"054\"], ...]: {e}") from e
        for pair in pairs:
            for key, table in ((pair[0], by_id), (pair[1], by_id), (frozenset(pair), by_pair)):
                if table.setdefault(key, split) != split:
                    raise DatasetError(f"FF++ splits put {sorted(key) if isinstance(key, frozenset) else key!r} "
                                       f"in both {table[key]} and {split}; fix {root / 'splits'}")
    return by_id, by_pair


def read_faceforensics(root, compression: str = "c23", **_) -> list[MediaItem]:
    """FF++ official layout: {original,manipulated}_sequences/<name>/<compression>/videos/*.mp4.

    Sequence folders lacking the requested compression are skipped (partial downloads are common); the
    compression must exist somewhere. Fakes are keyed by their target (the video whose frames were used),
    `related` holds target and source so a splitter can keep both with the fake.
    """
    root = _require_dir(root)
    sequences = sorted(d for top in ("original_sequences", "manipulated_sequences")
                       for d in (root / top).glob("*") if d.is_dir())
    available = sorted({c.name for d in sequences for c in d.iterdir() if (c / "videos").is_dir()})
    if compression not in available:
        raise DatasetError(
            f"FaceForensics++ at {root} has no {compression!r} videos (looked for */*/{compression}/videos); "
            f"available compressions: {', '.join(available) or 'none'}. Pass one of them (--compression)")
    by_id, by_pair = _ffpp_splits(root)
    items = []
    for seq in sequences:
        folder = seq / compression / "videos"
        if not folder.is_dir():
            log.warning("FF++: %s has no %s videos; skipped", seq.relative_to(root), compression)
            continue
        fake = seq.parent.name == "manipulated_sequences"
        method = seq.name if fake else "original"
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in VIDEO_EXTS:
                continue
            ids = _ffpp_ids(path.stem)
            split = by_pair.get(frozenset(ids)) if fake else by_id.get(ids[0])
            if split is None and fake and len({by_id.get(i) for i in ids}) == 1:
                split = by_id.get(ids[0])  # a pair not listed as such but both people on one side: follow them
            items.append(_item(path, int(fake), method, "FaceForensics++", ids, split, "video"))
    return items


# -- Celeb-DF v2 --------------------------------------------------------------------------------------------

CELEBDF_FOLDERS = {"Celeb-real": 0, "YouTube-real": 0, "Celeb-synthesis": 1}


def _celebdf_ids(folder: str, stem: str) -> tuple[str, ...]:
    """Celeb-real/id0_0000 -> ("id0",); Celeb-synthesis/id0_id16_0000 -> ("id0", "id16").

    A synthesis video is real video id0_0000 with id16's face swapped in: keyed by id0 (the target, whose
    video and head it is, like FF++), with id16 in `related`. YouTube-real clips are unnamed other people.
    """
    if folder == "YouTube-real":
        return (f"youtube-{stem}",)
    return tuple(p for p in stem.split("_") if p.startswith("id")) or (stem,)


def read_celebdf(root, **_) -> list[MediaItem]:
    """Celeb-DF (v1/v2): Celeb-real/, YouTube-real/, Celeb-synthesis/ and List_of_testing_videos.txt.

    The test list writes "1 YouTube-real/00170.mp4" with 1 = REAL, 0 = FAKE (inverted against ours); it is
    checked against the folders. Listed videos get split "test", the rest "train"; without the list, None.
    """
    root = _require_dir(root)
    items = {}
    for folder, label in CELEBDF_FOLDERS.items():
        for path in sorted((root / folder).glob("*")):
            if path.suffix.lower() in VIDEO_EXTS:
                method = "Celeb-synthesis" if label else "original"
                items[f"{folder}/{path.name}"] = _item(path, label, method, "Celeb-DF-v2",
                                                       _celebdf_ids(folder, path.stem), kind="video")
    listing = root / "List_of_testing_videos.txt"
    if not listing.is_file():
        return list(items.values())
    test, missing = set(), []
    for n, line in enumerate(listing.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            listed, rel = line.split(maxsplit=1)
            label = {"1": 0, "0": 1}[listed]  # Celeb-DF: 1 = real, 0 = fake
        except (ValueError, KeyError):
            raise DatasetError(f"{listing} line {n} is {line!r}; expected '<1 real | 0 fake> <folder>/<file>'")
        rel = rel.strip().replace("\\", "/")
        folder = rel.split("/", 1)[0]
        if folder not in CELEBDF_FOLDERS:
            raise DatasetError(f"{listing} line {n} names {rel!r}, outside {', '.join(CELEBDF_FOLDERS)}")
        if CELEBDF_FOLDERS[folder] != label:
            raise DatasetError(
                f"{listing} line {n} ({line.strip()!r}) marks {rel} as {('real', 'fake')[label]}, but {folder}/ "
                f"holds {('real', 'fake')[1 - label]} videos (in this list 1 means real, 0 fake); the list or the "
                f"folders are not Celeb-DF's")
        if rel not in items:
            missing.append(root / rel)
        test.add(rel)
    _missing(missing, listing)
    return [replace(it, split="test" if rel in test else "train") for rel, it in items.items()]


# -- DFDC ---------------------------------------------------------------------------------------------------


def _dfdc_folders(root: Path) -> list[Path]:
    return [d for d in (root, *sorted(p for p in root.iterdir() if p.is_dir()))
            if (d / "metadata.json").is_file() or (d / "labels.csv").is_file()]


def read_dfdc(root, **_) -> list[MediaItem]:
    """DFDC: metadata.json in the folder or its subfolders (dfdc_train_part_*), or the test set's labels.csv.

    metadata.json: {"abc.mp4": {"label": "FAKE"|"REAL", "split": "train", "original": "xyz.mp4"|null}}.
    labels.csv: "filename,label" with 1 = fake; these are the test set. A fake is keyed by its original's
    stem so it stays with that video. DFDC names no actors, so two originals of one actor stay two groups.
    """
    root = _require_dir(root)
    folders = _dfdc_folders(root)
    if not folders:
        raise DatasetError(f"no metadata.json or labels.csv in {root} or its subfolders; not a DFDC folder")
    items, seen = [], set()
    for folder in folders:
        meta, missing = folder / "metadata.json", []
        if meta.is_file():
            try:
                entries = json.loads(meta.read_text())
                entries = {name: (e["label"].upper(), e.get("split"), e.get("original")) for name, e in entries.items()}
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                raise DatasetError(f"{meta} is not DFDC metadata "
                                   f"({{'x.mp4': {{'label': 'FAKE', 'original': ...}}}}): {e!r}") from e
            for name, (label, split, original) in sorted(entries.items()):
                if label not in ("FAKE", "REAL"):
                    raise DatasetError(f"{meta}: {name} has label {label!r}; expected FAKE or REAL")
                path, fake = folder / name, label == "FAKE"
                if not path.is_file():
                    missing.append(path)
                ids = (Path(original).stem if fake and original else Path(name).stem,)
                items.append(_item(path, int(fake), "DFDC" if fake else "original", "DFDC", ids,
                                   split if split in SPLITS else None, "video"))
                seen.add(path)
            _missing(missing, meta)
        labels = folder / "labels.csv"
        if labels.is_file():
            index = None  # videos may sit beside labels.csv or in a subfolder; search only when needed
            with open(labels, newline="") as f:
                reader = csv.DictReader(f)
                if not {"filename", "label"} <= set(reader.fieldnames or ()):
                    raise DatasetError(f"{labels} needs a header 'filename,label'; it has {reader.fieldnames}")
                for row in reader:
                    try:
                        fake = {0: 0, 1: 1}[int(float(row["label"]))]
                    except (ValueError, KeyError, TypeError):
                        raise DatasetError(f"{labels}: {row['filename']} has label {row['label']!r}; expected "
                                           f"1 (fake) or 0 (real)")
                    path = folder / row["filename"]
                    if not path.is_file():
                        if index is None:
                            index = {p.name: p for p in sorted(folder.rglob("*")) if p.is_file()}
                        path = index.get(row["filename"], path)
                    if path in seen:
                        continue
                    if not path.is_file():
                        missing.append(path)
                    items.append(_item(path, fake, "DFDC" if fake else "original", "DFDC", (path.stem,), "test",
                                       "video"))
                    seen.add(path)
            _missing(missing, labels)
    return items


# -- real/ + fake/ folders ----------------------------------------------------------------------------------


def read_folders(root, **_) -> list[MediaItem]:
    """root/real/**/* and root/fake/**/* (videos and images); fake/<method>/... names the method.

    Identity is the file stem (a real and a fake with the same stem are grouped together, the safe side),
    unless root/identities.tsv (columns file, identity; file relative to root) names a group.
    """
    root = _require_dir(root)
    if not ((root / "real").is_dir() or (root / "fake").is_dir()):
        raise DatasetError(f"{root} has neither real/ nor fake/; the folders layout needs at least one")
    groups = {}
    sidecar = root / "identities.tsv"
    if sidecar.is_file():
        rows = _read_tsv(sidecar, ("file", "identity"))
        _missing([root / r["file"] for r in rows if not (root / r["file"]).is_file()], sidecar)
        groups = {Path(r["file"]).as_posix(): r["identity"] for r in rows}
    items = []
    for cls, label in (("real", 0), ("fake", 1)):
        base = root / cls
        for path in sorted(base.rglob("*")) if base.is_dir() else ():
            rel = path.relative_to(base)
            if any(p.startswith(".") for p in rel.parts) or not path.is_file() or _kind(path) is None:
                continue
            method = "original" if label == 0 else rel.parts[0] if len(rel.parts) > 1 else "unknown"
            identity = groups.get(path.relative_to(root).as_posix(), path.stem)
            items.append(_item(path, label, method, "folders", (identity,)))
    return items


# -- the project's shared research folder -------------------------------------------------------------------

_FFPP_SHARED = re.compile(r"^ffpp_(?:c\d+|raw)_(?P<sequence>[^_]+)_(?P<rest>.+)$")


def _shared_ffpp_ids(stem: str) -> tuple[str, ...]:
    """ffpp_c40_youtube_183 -> ("183",); ffpp_c40_Deepfakes_183_253 -> ("183", "253") (target first);
    ffpp_c40_actors_01__kitchen_pan -> ("01",). Empty for other files."""
    m = _FFPP_SHARED.match(stem)
    return _ffpp_ids(m["rest"]) if m else ()


def _shared_method(manipulation: str) -> str:
    # "GAN-synthesis (StyleGAN2, thispersondoesnotexist.com)" -> "StyleGAN2"
    m = re.match(r"GAN-synthesis\s*\(([^,)]+)", manipulation, re.IGNORECASE)
    return m[1].strip() if m else manipulation or "unknown"


# Collections of public-figure photos (face-recognition demos) show the same people in several files (Obama in
# five, unnamed celebrities in deepface_img*), so each collection is one identity group: a person can then never
# sit on both sides of a split. FFHQ photos and GAN faces are distinct people and keep one group per file.
_PHOTO_COLLECTIONS = ("facerec", "deepface", "facenetpt")


def _photo_collection(stem: str) -> str | None:
    prefix = stem.split("_", 1)[0]
    return f"collection:{prefix}" if prefix in _PHOTO_COLLECTIONS else None


def read_shared(root, **_) -> list[MediaItem]:
    """The research folder (../shared/data): MANIFEST.tsv and optional IDENTITY_GROUPS.tsv.

    Identity: the IDENTITY_GROUPS group where there is one; FF++ clips (ffpp_c40_*) use FF++ ids so that an
    original and the fakes made from it share one; otherwise the manifest's identity_hint, else the file stem
    (FFHQ and GAN faces are distinct people). FF++ clips report source "FaceForensics++" (their ids mean the
    same as in the FF++ reader), everything else "shared".
    """
    root = _require_dir(root)
    manifest = root / "MANIFEST.tsv"
    if not manifest.is_file():
        raise DatasetError(f"{root} has no MANIFEST.tsv; not the shared research folder")
    rows = _read_tsv(manifest, ("file", "label", "kind", "manipulation"))
    groups, group_file = {}, root / "IDENTITY_GROUPS.tsv"
    if group_file.is_file():
        groups = {r["file"]: r["identity_group"] for r in _read_tsv(group_file, ("file", "identity_group"))}
        unknown = sorted(set(groups) - {r["file"] for r in rows})
        if unknown:
            raise DatasetError(f"{group_file} names {len(unknown)} file(s) absent from {manifest}: "
                               f"{', '.join(unknown[:5])}")
    items, missing = [], []
    for row in rows:
        path = root / row["file"]
        if not path.is_file():
            missing.append(path)
        label = {"real": 0, "fake": 1}.get(row["label"].lower())
        if label is None:
            raise DatasetError(f"{manifest}: {row['file']} has label {row['label']!r}; expected real or fake")
        manipulation = row["manipulation"]
        method = "original" if label == 0 else _shared_method(manipulation)
        family = "synthesis" if label and manipulation.lower().startswith("gan-synthesis") else None
        ffpp = _shared_ffpp_ids(path.stem)
        identity = (groups.get(row["file"]) or (ffpp[0] if ffpp else None) or row.get("identity_hint")
                    or _photo_collection(path.stem) or path.stem)
        source = "FaceForensics++" if row.get("claimed_source_dataset", "").startswith("FaceForensics++") else "shared"
        kind = row["kind"].lower() if row["kind"].lower() in ("video", "image") else None
        items.append(_item(path, label, method, source, (identity, *ffpp), None, kind, family))
    _missing(missing, manifest)
    return items


# -- layouts ------------------------------------------------------------------------------------------------

LAYOUTS: dict[str, Callable[..., list[MediaItem]]] = {
    "faceforensics": read_faceforensics,
    "celebdf": read_celebdf,
    "dfdc": read_dfdc,
    "folders": read_folders,
    "shared": read_shared,
}

# What each layout expects, in detection order: the explicit manifest first, the loose real/fake last.
LAYOUT_FILES = {
    "shared": "MANIFEST.tsv (tab-separated: file, label, kind, manipulation, ...) and optional IDENTITY_GROUPS.tsv",
    "faceforensics": "original_sequences/ and manipulated_sequences/<Method>/ with <c23|c40|raw>/videos/*.mp4",
    "celebdf": "Celeb-real/, YouTube-real/, Celeb-synthesis/ and optional List_of_testing_videos.txt",
    "dfdc": "metadata.json (or the test set's labels.csv) in the folder or its subfolders",
    "folders": "real/ and fake/ (fake/<method>/ optional) holding videos or images",
    "manifest": "a .tsv file (not a folder) with columns file, label, family, identity (see --media)",
}


def detect_layout(root) -> str:
    """The name of the layout `root` follows; DatasetError listing what each layout expects if none fits."""
    root = _require_dir(root)
    if (root / "MANIFEST.tsv").is_file():
        return "shared"
    if (root / "original_sequences").is_dir() or (root / "manipulated_sequences").is_dir():
        return "faceforensics"
    if any((root / d).is_dir() for d in CELEBDF_FOLDERS):
        return "celebdf"
    if _dfdc_folders(root):
        return "dfdc"
    if (root / "real").is_dir() or (root / "fake").is_dir():
        return "folders"
    expected = "\n".join(f"  {name}: {files}" for name, files in LAYOUT_FILES.items())
    raise DatasetError(f"cannot tell the dataset layout of {root}. Recognised layouts and what each expects:\n"
                       f"{expected}\nArrange the folder like one of these, or pass --layout NAME to choose one.")


def read_dataset(root, layout: str = "auto", **options) -> list[MediaItem]:
    """List a dataset's items; `layout` is a key of LAYOUTS or "auto". Options go to the layout's reader.
    A .tsv file instead of a folder is a manifest (streamdetect.training.manifest)."""
    if Path(root).suffix.lower() == ".tsv" and layout in ("auto", "manifest"):
        from streamdetect.training.manifest import read_manifest_tsv

        return read_manifest_tsv(root, options.get("media"))
    if layout == "manifest":
        raise DatasetError(f"layout 'manifest' reads a .tsv file, not {root}; pass the manifest file itself")
    root = _require_dir(root)
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)} or 'auto' (--layout)")
    return LAYOUTS[layout](root, **options)


# -- identity-safe split ------------------------------------------------------------------------------------


class _UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, key):
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]  # path halving keeps chains short
            key = self.parent[key]
        return key

    def union(self, keys):
        keys = list(keys)
        for key in keys[1:]:
            self.parent[self.find(key)] = self.find(keys[0])
        return self.find(keys[0])


def split_by_identity(items: Iterable[MediaItem], val_fraction: float = 0.2,
                      seed: int = 0) -> tuple[list[MediaItem], list[MediaItem]]:
    """(train, val) with no person on both sides; deterministic for a seed, input order kept.

    Items with split "test" are left out (held out for evaluation). A dataset that defines "val" keeps its own
    train/val. Everything else (no split, or a dataset defining only train/test such as Celeb-DF and DFDC) is
    split here: items are joined through identity and related ids (union-find, ids scoped per source dataset),
    whole groups go to val while they fit within `val_fraction` of them, and a group is swapped in when val
    would otherwise miss a class that train can spare (and the other way round). Unassigned items tied to a
    person already on a side follow that person.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    items = [i for i in items if i.split != "test"]
    with_val = {i.source_dataset for i in items if i.split == "val"}
    side = {}  # item index -> "train" / "val"
    uf = _UnionFind()
    for n, item in enumerate(items):
        uf.union((item.source_dataset, r) for r in item.related)
        if item.split == "val" or (item.split == "train" and item.source_dataset in with_val):
            side[n] = item.split
    pinned = {}
    for s in ("train", "val"):  # a group an official split already puts on both sides: extra items train
        for n in (n for n, t in side.items() if t == s):
            pinned.setdefault(uf.find((items[n].source_dataset, items[n].identity)), s)
    groups = {}
    for n, item in enumerate(items):
        if n not in side:
            key = uf.find((item.source_dataset, item.identity))
            if key in pinned:
                side[n] = pinned[key]
            else:
                groups.setdefault(key, []).append(n)
    # Order groups by content, not by dict order, so the result depends only on the items and the seed.
    free = sorted(groups.values(), key=lambda g: min(str(items[n].path) for n in g))
    random.Random(seed).shuffle(free)
    pool = sum(len(g) for g in free)
    target = round(val_fraction * pool)
    if val_fraction > 0 and target == 0 and len(free) > 1:
        target = 1
    # Fill val with whole groups that fit the target; a group larger than what is left waits in train, so
    # one big family (an actor with many clips) cannot swallow val. At least one group goes to val.
    val, train, count = [], [], 0
    for g in free:
        if count + len(g) <= target:
            val.append(g)
            count += len(g)
        else:
            train.append(g)
    if not val and target and len(train) > 1:
        val.append(train.pop(train.index(min(train, key=len))))
    # Both classes on both sides when a class has groups to spare: move the smallest group holding it.
    for label in sorted({items[n].label for g in free for n in g}) if target else ():
        for dst, src in ((val, train), (train, val)):
            holders = [g for g in src if any(items[n].label == label for n in g)]
            if len(holders) > 1 and not any(items[n].label == label for g in dst for n in g):
                move = min(holders, key=len)
                src.remove(move)
                dst.append(move)
    for name, chosen in (("train", train), ("val", val)):
        for g in chosen:
            for n in g:
                side[n] = name
    return ([i for n, i in enumerate(items) if side[n] == "train"],
            [i for n, i in enumerate(items) if side[n] == "val"])
