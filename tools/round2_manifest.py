"""Write examples/manifests/round2.tsv: ../shared/data/round2/MANIFEST.tsv in the manifest layout
(streamdetect.training.manifest), with the identity groups its README and notes describe.

    python tools/round2_manifest.py ../shared/data/round2/MANIFEST.tsv examples/manifests/round2.tsv

Identity: TalkingHeadBench clips carry their YouTube source id (a fake and a real, or two generators, can share
one); EchoMimic v1 en_01 = ch_01 and en_02 = s_03 = ch_02; AniTalker outputs share their source portrait (and an
_SR file is an upscaled copy); GeneFace and SyncTalk both show Theresa May; everything else is its own group.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

COLUMNS = ("file", "label", "family", "identity", "category", "source", "repo", "commit", "path", "sha256")


def identity(row: dict) -> str:
    name, notes = Path(row["file"]).stem, row["notes"]
    if m := re.search(r"source clip id (\S+)", notes):
        return f"yt:{m[1]}"
    if m := re.search(r"source image group (\w+)", notes):
        return f"anitalker:{m[1]}"
    if m := re.search(r"echomimic_v1_\w+?_(ch|en|s)_(\d+)", name):
        person = {"en_01": "ch_01", "en_02": "ch_02", "s_03": "ch_02"}.get(f"{m[1]}_{m[2]}", f"{m[1]}_{m[2]}")
        return f"echomimic1:{person}"
    if "Theresa May" in notes:
        return "person:theresa_may"
    return f"file:{name}"


def main(src: str, dst: str) -> None:
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    with open(dst, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(COLUMNS)
        for r in rows:
            fake = r["label"] == "fake"
            w.writerow([r["file"], r["label"], r["family"], identity(r), "animation" if fake else "",
                        "round2", r["repo"], r["commit"], r["path_in_repo"], r["sha256"]])
    print(f"wrote {len(rows)} rows to {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
