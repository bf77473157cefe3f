"""Bring-your-own training mixes: a TSV manifest of media files, and a way to download one by sha256.

A manifest is a tab-separated file, one row per video or photo:

    file      path of the media, relative to the media folder (the manifest's own folder unless told otherwise)
    label     real | fake
    family    the generator family of a fake (Hallo, LivePortrait, Deepfakes, ...) or the source of a real; the
              leave-one-family-out protocol holds out whole families
    identity  the person (or source video) it shows; splits keep an identity on one side

Optional columns: `category` (blend | synthesis | animation; default from the family name, animation for
names it does not know), `kind` (video | image; default from the extension), `source` (the dataset it came
from; default "manifest"), `related` (more person ids, comma-separated, e.g. the source face of a swap), and for
`streamdetect fetch-manifest`: `url`, or `repo` + `commit` + `path` (`path_in_repo` is accepted too), and
`sha256` (checked whenever present).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from streamdetect.errors import DatasetError
from streamdetect.training.readers import CATEGORIES, MediaItem, _kind, _missing, _read_tsv, method_family

log = logging.getLogger(__name__)

REQUIRED = ("file", "label", "family", "identity")


def read_manifest_tsv(manifest, root=None, **_) -> list[MediaItem]:
    """The items a manifest lists; DatasetError naming the row and the fix for anything unusable."""
    manifest = Path(manifest).expanduser()
    if not manifest.is_file():
        raise DatasetError(f"manifest {manifest} does not exist; pass a tab-separated file with columns "
                           f"{', '.join(REQUIRED)}")
    root = Path(root).expanduser() if root else manifest.parent
    rows = _read_tsv(manifest, REQUIRED)
    if not rows:
        raise DatasetError(f"{manifest} lists no files")
    items, missing = [], []
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{manifest}:{n} ({row['file'] or 'no file'})"
        for column in REQUIRED:
            if not row[column]:
                raise DatasetError(f"{where}: the {column} column is empty; every row needs {', '.join(REQUIRED)}")
        label = {"real": 0, "fake": 1, "0": 0, "1": 1}.get(row["label"].lower())
        if label is None:
            raise DatasetError(f"{where}: label {row['label']!r}; expected real or fake")
        path = root / row["file"]
        if not path.is_file():
            missing.append(path)
        category = row.get("category") or None
        if category and category not in CATEGORIES:
            raise DatasetError(f"{where}: category {category!r}; expected one of {', '.join(CATEGORIES)}")
        if label == 0:
            category = "real"
        elif category is None:
            category = method_family(row["family"], 1, unknown="animation")
        kind = row.get("kind") or _kind(path)
        if kind not in ("video", "image"):
            raise DatasetError(f"{where}: cannot tell whether it is a video or an image; add a kind column "
                               f"(video | image) or use a known extension")
        related = tuple(r.strip() for r in row.get("related", "").split(",") if r.strip())
        method = "original" if label == 0 else row["family"]
        items.append(MediaItem(path, label, method, row.get("source") or "manifest", row["identity"],
                               related, None, kind, category, generator=row["family"]))
    _missing(missing, manifest)
    return items


# -- materialising a manifest ---------------------------------------------------------------------------------

def source_url(row: dict, base_url: str = "https://raw.githubusercontent.com") -> str | None:
    """Where a row's bytes can be downloaded: its `url`, else GitHub raw at (repo, commit, path)."""
    if row.get("url"):
        return row["url"]
    path = row.get("path") or row.get("path_in_repo")
    if row.get("repo") and row.get("commit") and path:
        return f"{base_url.rstrip('/')}/{row['repo']}/{row['commit']}/{path}"
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_manifest(manifest, out, base_url: str = "https://raw.githubusercontent.com", timeout: float = 60.0,
                   progress: bool = True) -> dict:
    """Download every row of `manifest` into `out`/<file>, checking sha256 where the manifest gives one.

    Files already present with the right sha256 are kept (a rerun resumes). A download goes to <file>.part and
    is renamed only once its hash is right, so an interrupted or corrupted download never looks complete.
    Returns counts; raises DatasetError listing every failure after trying all rows."""
    import urllib.request

    from streamdetect.training.progress import progress_bar

    manifest, out = Path(manifest), Path(out)
    rows = _read_tsv(manifest, ("file",))
    counts = {"downloaded": 0, "present": 0, "failed": []}
    for row in progress_bar(rows, desc="fetch", unit="file", enabled=progress):
        target = out / row["file"]
        want = row.get("sha256", "").lower() or None
        if target.is_file() and (want is None or sha256_of(target) == want):
            counts["present"] += 1
            continue
        url = source_url(row, base_url)
        if url is None:
            counts["failed"].append(f"{row['file']}: no url column and no repo/commit/path to build one")
            continue
        part = target.with_name(target.name + ".part")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as f:
                while block := response.read(1 << 20):
                    f.write(block)
        except OSError as exc:  # URLError and HTTPError are OSErrors
            part.unlink(missing_ok=True)
            counts["failed"].append(f"{row['file']}: download from {url} failed ({exc})")
            continue
        got = sha256_of(part)
        if want is not None and got != want:
            part.unlink()
            counts["failed"].append(f"{row['file']}: sha256 mismatch (manifest {want}, downloaded {got}) from "
                                    f"{url}; the file changed upstream or the manifest is wrong")
            continue
        os.replace(part, target)
        counts["downloaded"] += 1
    if counts["failed"]:
        shown = "\n  ".join(counts["failed"][:10])
        more = f"\n  ... and {len(counts['failed']) - 10} more" if len(counts["failed"]) > 10 else ""
        raise DatasetError(f"{len(counts['failed'])} of {len(rows)} file(s) of {manifest} could not be fetched "
                           f"({counts['downloaded']} downloaded, {counts['present']} already present):\n  "
                           f"{shown}{more}\nRerun to retry; files already checked are kept.")
    return counts
