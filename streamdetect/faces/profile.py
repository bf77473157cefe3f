"""`python -m streamdetect.faces.profile`: milliseconds per frame of each part of the face stage, on the bundled
sample at 720p and upscaled to 1080p, for the schedule before issue 12 ("grid": a whole-frame pass every 3 frames
and a 2 x 2 grid of tiles every 15) and the current one (faces.stage), run on the same frames, interleaved, so a
loaded machine slows both alike. Times are CPU time of this process (the stage runs on one thread), which a
shared machine's load disturbs far less than wall time. Prints a table, or JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict

import cv2
import numpy as np

from streamdetect.config import FacesConfig
from streamdetect.faces.crop import align_crop
from streamdetect.faces.detector import MediaPipeFaceDetector, non_max_suppression, tile_grid
from streamdetect.faces.quality import quality_flags
from streamdetect.faces.stage import FaceStage
from streamdetect.faces.tracker import FaceTracker


def grid_detect(det: MediaPipeFaceDetector, rgb: np.ndarray, tiled: bool) -> list:
    """The detector as it was: whole frame, plus every tile of a 2 x 2 grid (25 % overlap) when tiled, all at
    min_score, merged by NMS, nothing verified."""
    found = det._detect_region(rgb, 0, 0, "grid")
    if tiled:
        h, w = rgb.shape[:2]
        for x0, y0, x1, y1 in tile_grid(w, h, 2, 0.25):
            found += det._detect_region(rgb[y0:y1, x0:x1], x0, y0, "grid")
    return non_max_suppression(found, det.nms_iou)


def profile(height: int, frames: int = 180, crop_size: int = 112) -> dict:
    import av

    from streamdetect.service import sample_clip

    cfg = FacesConfig()
    det = MediaPipeFaceDetector()
    stage = FaceStage(det, cfg)
    trackers = {"grid": FaceTracker(max_missed=cfg.max_missed), "stage": FaceTracker(max_missed=cfg.max_missed)}
    ms = {k: defaultdict(float) for k in trackers}
    tracks = {k: defaultdict(int) for k in trackers}
    lost = {k: 0 for k in trackers}
    faces = {k: 0 for k in trackers}
    n = 0
    with av.open(str(sample_clip())) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i >= frames:
                break
            n += 1
            rgb = f.to_ndarray(format="rgb24")
            if rgb.shape[0] != height:
                rgb = cv2.resize(rgb, (round(rgb.shape[1] * height / rgb.shape[0]), height), interpolation=cv2.INTER_LINEAR)
            for name in (["grid", "stage"] if i % 2 else ["stage", "grid"]):
                tr = trackers[name]
                t0 = time.process_time()
                if name == "grid":
                    if i % 3 == 0:  # the old defaults: detect_every 3, tile_every 15
                        dets = grid_detect(det, rgb, tiled=i % 15 == 0)
                        t1 = time.process_time()
                        update = tr.update(dets)
                    else:
                        t1 = time.process_time()
                        update = tr.predict_only()
                else:  # the stage decides, detects and updates the tracker in one call: timed as one
                    update = stage.step(rgb, tr, i)
                    t1 = time.process_time()
                t2 = time.process_time()
                for t in update.active:
                    crop = align_crop(rgb, t.detection, crop_size, style="box")
                    quality_flags(crop, t.detection)
                    tracks[name][t.track_id] += 1
                    lost[name] += t.missed > 0
                    faces[name] += 1
                t3 = time.process_time()
                ms[name]["detector"] += (t1 - t0) * 1e3
                ms[name]["tracker"] += (t2 - t1) * 1e3
                ms[name]["crop+quality"] += (t3 - t2) * 1e3
    stats = {k: {"passes": n, "wall_ms_per_pass": round(1e3 * s / max(1, n), 2)} for k, (n, s) in det.stats.items()}
    det.close()
    out = {"height": height, "frames": n, "load": os.getloadavg()[0], "passes": stats}
    for name in trackers:
        out[name] = {k: round(v / n, 2) for k, v in ms[name].items()}
        out[name]["tracks"] = len(tracks[name])
        out[name]["face_frames"] = faces[name]
        out[name]["lost_face_frames"] = lost[name]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=180)
    p.add_argument("--height", type=int, action="append", help="720 and 1080 by default")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    results = [profile(h, args.frames) for h in (args.height or [720, 1080])]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("CPU ms per frame. detector: the detector passes (stage: with its tracker update, ~0.1 ms); crop+quality: every face")
    for r in results:
        print(f"{r['height']}p, {r['frames']} frames of the sample, load {r['load']:.1f}; ms per frame:")
        print(f"  {'schedule':<8} {'detector':>9} {'tracker':>8} {'crop+quality':>13} {'tracks':>7} {'lost face-frames':>17}")
        for name in ("grid", "stage"):
            s = r[name]
            print(f"  {name:<8} {s['detector']:>9.2f} {s['tracker']:>8.3f} {s['crop+quality']:>13.2f} {s['tracks']:>7} "
                  f"{s['lost_face_frames']:>8}/{s['face_frames']}")
        print("  passes: " + ", ".join(f"{k} {v['passes']} x {v['wall_ms_per_pass']} ms (wall)" for k, v in r["passes"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
