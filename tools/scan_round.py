"""Score a manifest of raw videos exactly as issue 9's held-out sets are scored: `streamdetect scan` per file.

    python tools/scan_round.py examples/manifests/round9.tsv --media MEDIA_DIR --out runs/scan/round9.jsonl
           [--model M] [--prepared prepared/round9]

Several manifests of one round (round6_swap, round6_lipsync, round6_anim) are scored as one round.

Every other table in the README scores *prepared* frames (`evaluate`: the face `prepare` kept, at most 150 frames,
temperature refitted per round). This runs the shipped path instead — ONNX Runtime engine, live MediaPipe
detection and tracking, every frame of the whole file, the card's temperature, the most suspicious face per frame —
so it measures what `scan` loses or gains against `evaluate` on the same clips. Results are appended to --out one
line per file, so an interrupted run resumes. Printed: video AUC of scan's p_fake with a 95 % bootstrap interval,
the same for the longest track's mean p_fake (does the max over faces hurt?), and with --prepared, the paired
difference to `evaluate`'s scan score on the same clips.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from streamdetect.config import ServiceConfig
from streamdetect.scan import scan
from streamdetect.service import load_runtime
from streamdetect.training import metrics as M


def _rows(manifests: list[Path], media: Path) -> list[dict]:
    rows = []
    for manifest in manifests:
        with open(manifest, newline="") as f:
            rows += [r for r in csv.DictReader(f, delimiter="\t") if r.get("kind", "video") == "video"]
    missing = [r["file"] for r in rows if not (media / r["file"]).is_file()]
    if missing:
        sys.exit(f"{len(missing)} files of {[str(m) for m in manifests]} are not under {media} (first: "
                 f"{missing[0]}); materialise them first (streamdetect fetch-manifest or the fetch tool)")
    return rows


def _scan_all(rows, media: Path, out: Path, config: ServiceConfig) -> dict[str, dict]:
    done = {}
    if out.is_file():
        done = {d["file"]: d for d in map(json.loads, out.read_text().splitlines())}
    todo = [r for r in rows if r["file"] not in done]
    if todo:
        engine, detector = load_runtime(config)
        try:
            with open(out, "a") as f:
                for r in tqdm(todo, desc="scan", unit="video"):
                    s = scan(media / r["file"], config, engine, detector)
                    longest = max(s["tracks"], key=lambda t: t["frames"], default=None)
                    d = {"file": r["file"], "label": r["label"], "family": r["family"],
                         "category": r.get("category", ""), "p_fake": s["p_fake"], "frames": s["frames"],
                         "frames_with_faces": s["frames_with_faces"], "tracks": len(s["tracks"]),
                         "max_faces": max((t["faces"] for t in s["timeline"]), default=0),
                         "longest_track_p_fake": longest["p_fake"] if longest else None, "verdict": s["verdict"]}
                    f.write(json.dumps(d) + "\n")
                    f.flush()
                    done[r["file"]] = d
        finally:
            detector.close()
    return done


def _auc_line(name: str, y: np.ndarray, v: np.ndarray) -> str:
    lo, hi = M.bootstrap_auc_ci(y, v)
    return f"{name}: video AUC {M.roc_auc(y, v):.3f} (95 % CI {lo:.3f}-{hi:.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifests", nargs="+", type=Path, help="TSV manifests of one round (file, label, family)")
    ap.add_argument("--media", type=Path, required=True, help="folder the manifests' `file` paths are relative to")
    ap.add_argument("--out", type=Path, required=True, help="JSONL of per-file results (resumed if present)")
    ap.add_argument("--model", help="checkpoint or export directory (default: the bundled model)")
    ap.add_argument("--prepared", nargs="+", help="the same clips prepared: compare with evaluate's scan score")
    args = ap.parse_args()
    rows = _rows(args.manifests, args.media)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    res = _scan_all(rows, args.media, args.out, ServiceConfig(model=args.model))
    files = [r["file"] for r in rows if res[r["file"]]["p_fake"] is not None]
    faceless = [r["file"] for r in rows if res[r["file"]]["p_fake"] is None]
    y = np.array([res[f]["label"] == "fake" for f in files], dtype=int)
    v = np.array([res[f]["p_fake"] for f in files])
    lt = np.array([res[f]["longest_track_p_fake"] for f in files], dtype=float)
    print(f"{int(y.sum())} fakes / {int((1 - y).sum())} reals with a face; {len(faceless)} without: {faceless[:5]}")
    print(_auc_line("scan p_fake (max face per frame)", y, v))
    print(_auc_line("longest track's mean p_fake", y, np.where(np.isnan(lt), v, lt)))
    multi = sum(res[f]["max_faces"] > 1 for f in files)
    print(f"{multi} clips had more than one face in some frame; at the card's threshold "
          f"{np.mean([res[f]['verdict'] == 'fake' for f in files if res[f]['label'] == 'fake']):.0%} of fakes and "
          f"{np.mean([res[f]['verdict'] == 'fake' for f in files if res[f]['label'] == 'real']):.0%} of reals alert")
    for cat in sorted({res[f]["category"] for f in files if res[f]["label"] == "fake"} - {""}):
        keep = np.array([res[f]["label"] == "real" or res[f]["category"] == cat for f in files])
        print(f"  {cat}: {M.roc_auc(y[keep], v[keep]):.3f} ({int(y[keep].sum())} fakes)")
    if args.prepared:
        _compare_prepared(args, files, y, v)


def _compare_prepared(args, files, y, v) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from compare_models import scores_of
    from streamdetect.service import default_model
    from streamdetect.training.prepare import read_manifest

    keys, _, e = scores_of(args.model or str(default_model()), args.prepared, "scan")
    path_of = {r["key"]: Path(r["path"]).resolve() for folder in args.prepared for r in read_manifest(folder)}
    by_path = {path_of[k]: s for k, s in zip(keys, e)}  # matched by media file, not by prepare's key rule
    pairs = [(i, by_path.get((args.media / f).resolve())) for i, f in enumerate(files)]
    idx = [i for i, s in pairs if s is not None]
    ev = np.array([s for _, s in pairs if s is not None])
    print(f"{len(idx)} of {len(files)} clips also prepared; evaluate's scan score there: "
          f"{M.roc_auc(y[idx], ev):.3f}, scan: {M.roc_auc(y[idx], v[idx]):.3f}")
    d = M.paired_auc_difference(y[idx], ev, v[idx])
    print(f"scan - evaluate: {d['diff']:+.3f} (95 % CI {d['ci'][0]:+.3f} to {d['ci'][1]:+.3f})")


if __name__ == "__main__":
    main()
