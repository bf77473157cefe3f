"""The face stage of one pipeline: per frame, which detector passes run, and the tracker fed with their result.

Each pass is one 192x192 inference of the face detector (faces.detector), so the stage's cost is the number of
passes. A detector run (every `detect_every` frames) is:
  1. one whole-frame pass: finds every face large enough for it (~90 px and up in 720p);
  2. at most one tile, in turn (square tiles: 2 in 16:9), on every few runs so that each tile is looked at about
     every `tile_every` frames: tiles only *discover* new small faces, so they can be rare;
  3. a padded look around every small tracked face the passes above did not see (`detect_roi`): a 40 px face in
     720p, invisible to the whole-frame pass, is kept at every run instead of only when its tile's turn comes
     (it used to be flagged `lost`, hence unscored, between tiled passes). When more small faces need a look than
     there are tiles, all tiles run instead (cheaper), and no padded looks follow;
  4. a second look (`verify`) at any new face only a tile saw: a tile shows the frame magnified, where collars and
     hands sometimes pass for faces; the padded look has to find it again, and its score is the one kept.
A run that found every face where the tracker predicted it (IoU >= 0.8; nothing lost, nothing new) lets the stream
skip its next run, tiled runs excepted (`skip_steady`): a still or smoothly moving face costs a whole-frame pass
every 6 frames instead of every 3, a moving or changing scene keeps the full rate.
The first run of a stream (and after a reconnect) looks at every tile at once. Streams are staggered (`phase`) so
that several streams do not all run the detector on the same round.

A detector that has only `detect(rgb, tiled)` (the FaceDetector protocol) gets the plain schedule: a whole-frame
pass every `detect_every` frames, with its own tiled pass about every `tile_every` frames.
"""

from __future__ import annotations

import weakref

import numpy as np

from streamdetect.faces.detector import _overlap, non_max_suppression
from streamdetect.faces.tracker import FaceTracker, TrackUpdate
from streamdetect.faces.types import Detection

MATCH = 0.3  # a detection and a track's predicted box overlapping this much are the same face
STEADY_IOU = 0.8  # a run is steady when every face was found within this IoU of where the tracker predicted it
MAX_VERIFY = 1  # second looks at new faces per run (a live stream has more runs; a new face waits one run)
MAX_ROI = 4  # padded looks around small tracked faces per run at most (more: the tiles run instead)


class FaceStage:
    def __init__(self, detector, config):
        """config: a config.FacesConfig (detect_every, tile_every)."""
        self.detector, self.cfg = detector, config
        self._steady = weakref.WeakKeyDictionary()  # tracker -> its last run was steady (see _steady)
        self._passes = all(hasattr(detector, a) for a in ("detect_full", "detect_tile", "detect_roi", "tiles_for",
                                                          "merge_tiles", "full_min_px"))

    def step(self, rgb: np.ndarray, tracker: FaceTracker, frame: int, phase: int = 0) -> TrackUpdate:
        """Advance `tracker` by one frame. frame: the stream's frame count since it (re)started (0 runs the
        detector with every tile); phase: the stream's stagger (its index in the pipeline)."""
        run, turn = self.plan(frame, phase, rgb.shape[1], rgb.shape[0])
        if run and turn is None and self._steady.pop(tracker, False):
            run = False  # every face was where the tracker said, last run: skip one (never two in a row)
        if not run:
            return tracker.predict_only()
        if not self._passes:
            return tracker.update(self.detector.detect(rgb, tiled=turn is not None))
        before = {i: box for i, box, confirmed in tracker.expected() if confirmed}
        update = tracker.update(self.detect(rgb, tracker, turn))
        if self.cfg.skip_steady:
            self._steady[tracker] = _steady(before, update)
        return update

    def plan(self, frame: int, phase: int, width: int, height: int) -> tuple[bool, int | None]:
        """(whether the detector runs on this frame, the tile it looks at: an index, -1 for all, None for none)."""
        k = self.cfg.detect_every
        n = frame + phase % k
        if frame != 0 and n % k:
            return False, None
        if frame == 0:
            return True, -1
        run = n // k
        if not self._passes:  # a plain detector's own tiled pass, about every tile_every frames
            return True, (-1 if run % max(1, self.cfg.tile_every // k) == 0 else None)
        tiles = len(self.detector.tiles_for(width, height))
        every = max(1, round(self.cfg.tile_every / (k * max(1, tiles))))  # runs between two tile passes
        return True, ((run // every) % tiles if tiles and run % every == 0 else None)

    def detect(self, rgb: np.ndarray, tracker: FaceTracker, tile: int | None = None) -> list[Detection]:
        """One detector run as described above. tile: the tile to look at, -1 for all, None for none."""
        d = self.detector
        h, w = rgb.shape[:2]
        found = d.detect_full(rgb)
        tracks = [box for _, box, _ in tracker.expected()]
        small = d.full_min_px(w, h)
        # A whole-frame box of a small face is a loose guess (a 48 px face in 720p comes back ~75 px, score ~0.55):
        # only a large one counts as seen; a padded look gives the tight box, which then wins by score.
        loose = [f for f in found if f.box.height < small]
        unseen_small = [b for b in tracks if b.height < small and not _near(b, [f for f in found if f not in loose])]
        n_tiles = len(d.tiles_for(w, h))
        if n_tiles and (tile == -1 or len(unseen_small) > min(MAX_ROI, n_tiles)):
            looks = list(range(n_tiles))  # cheaper than a look around each small face
        else:
            looks = [] if tile is None or not n_tiles else [tile]
        tiled = non_max_suppression([t for i in looks for t in d.detect_tile(rgb, i)], d.nms_iou)
        seen = d.merge_tiles(rgb, found, tiled, tracks, max_verify=MAX_VERIFY) if tiled else found
        rois = []
        if len(looks) == n_tiles > 0:
            unseen_small = []  # every tile ran: a small face they missed waits for the next run
        for b in [b for b in unseen_small if not _near(b, [f for f in seen if f not in loose])][:MAX_ROI]:
            rois += d.detect_roi(rgb, b)
        return non_max_suppression(seen + rois, d.nms_iou)


def _near(box, others) -> bool:
    """Whether `box` is one of `others` (boxes or detections) by overlap."""
    return any(_overlap(box, getattr(o, "box", o)) >= MATCH for o in others)


def _steady(before: dict, update: TrackUpdate) -> bool:
    """Every face found where the tracker predicted it (IoU >= STEADY_IOU), none lost, none new, at least one."""
    after = {t.track_id: t for t in update.active}
    if not before or set(after) != set(before) or update.ended:
        return False
    return all(t.missed == 0 and t.box.iou(before[i]) >= STEADY_IOU for i, t in after.items())
