"""`streamdetect prepare`: videos and photos -> face-crop sequences, with the service's own detector and crop.

Output folder:
    prepare.json                 how it was made (dataset root, layout, sizes, sampling)
    manifest.jsonl               one line per usable item: key, label, method, family, identity, frames, ...
    errors.jsonl                 items that could not be used and why (undecodable, no face)
    items/<key>/crops_<S>.npy    (N, S, S, 3) uint8 aligned crops, one per kept frame, for each size S
    items/<key>/landmarks.npy    (N, 468, 3) float32 face-mesh landmarks in crop units (0..1 across the crop)
    items/<key>/frames.npy       (N,) source frame numbers (gaps where no face was found)
    items/<key>/meta.json        written last: an item with meta.json is complete, so a rerun skips it

Crops are plain .npy so training can memory-map a window of a clip without reading the rest.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from streamdetect.errors import DatasetError
from streamdetect.faces.crop import align_crop
from streamdetect.sources.frames import upright_rgb
from streamdetect.training.readers import IMAGE_EXTS, MediaItem, read_dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrepareConfig:
    sizes: tuple[int, ...] = (112,)
    frames: int = 150  # the paper's first 150 frames
    sampling: str = "first"  # "first": consecutive frames from the start; "even": spread over the video
    detector: str = "full_range"
    min_face_px: int = 24  # smaller faces carry no usable detail at 112 px
    workers: int = 2
    crop: str = "box"  # streamdetect.faces.crop.CROP_STYLES; a model trains only on data of its own crop

    def __post_init__(self):
        from streamdetect.faces.crop import check_style
        from streamdetect.model.card import check_input_size

        check_style(self.crop)
        if self.sampling not in ("first", "even"):
            raise ValueError(f"sampling must be 'first' or 'even', got {self.sampling!r}")
        if not self.sizes:
            raise ValueError("sizes must name at least one crop size, e.g. 112")
        for size in self.sizes:
            check_input_size(size)
        if self.frames < 1:
            raise ValueError(f"frames must be at least 1, got {self.frames}")


@dataclass
class PrepareReport:
    out: Path
    prepared: int = 0
    skipped_existing: int = 0
    failed: list = field(default_factory=list)  # (key, reason)
    frames: int = 0


def item_key(item: MediaItem, root: Path) -> str:
    """A file-system-safe, stable name for an item: its path inside the dataset (links are not followed)."""
    try:
        rel = str(item.path.relative_to(root).with_suffix(""))
    except ValueError:  # outside the root: the whole path, so two such files cannot share a name
        rel = str(item.path.with_suffix("")).lstrip("/")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", rel)


def item_keys(items: list[MediaItem], root: Path) -> list[str]:
    """Keys for all items; names that would collide (x.jpg and x.png, "a b" and "a_b") get a path hash."""
    import hashlib
    from collections import Counter

    keys = [item_key(i, root) for i in items]
    count = Counter(keys)
    return [k if count[k] == 1 else f"{k}-{hashlib.sha1(str(i.path).encode()).hexdigest()[:8]}"
            for k, i in zip(keys, items)]


# -- reading frames ---------------------------------------------------------------------------------------------
def read_frames(path: Path, config: PrepareConfig):
    """Yield (frame_number, rgb) for the frames to consider. Raises DatasetError when the file cannot be read."""
    if path.suffix.lower() in IMAGE_EXTS:
        import cv2

        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"{path}: not a readable image or video; convert it to .jpg/.png/.mp4 or remove it")
        yield 0, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise DatasetError(f"{path}: cannot be opened as a video ({exc}); re-encode it "
                           f"(ffmpeg -i IN -c:v libx264 OUT.mp4) or remove it from the dataset") from exc
    with container:
        if not container.streams.video:
            raise DatasetError(f"{path}: has no video stream; remove it from the dataset")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        wanted = None
        if config.sampling == "even" and stream.frames and stream.frames > config.frames:
            wanted = set(np.linspace(0, stream.frames - 1, config.frames).round().astype(int).tolist())
        i = -1
        try:
            for i, frame in enumerate(container.decode(stream)):
                if wanted is None or i in wanted:
                    yield i, upright_rgb(frame)
        except av.error.FFmpegError as exc:
            if i < 0:
                raise DatasetError(f"{path}: cannot be decoded ({exc}); re-encode it or remove it") from exc
            log.warning("%s: decoding stopped at frame %d (%s); keeping the frames before it", path, i, exc)


# -- one item ---------------------------------------------------------------------------------------------------
class _Preparer:
    """Detector + face mesh for one process (MediaPipe graphs are not shared across processes)."""

    def __init__(self, config: PrepareConfig):
        from streamdetect.faces.detector import MediaPipeFaceDetector
        from streamdetect.faces.landmarks import FaceMesh

        self.config = config
        self.detector = MediaPipeFaceDetector(config.detector)
        self.mesh = FaceMesh()

    def main_face(self, rgb, previous):
        """The face this item is about: the one continuing the previous frame's box, else the largest."""
        found = self.detector.detect(rgb, tiled=False) or self.detector.detect(rgb, tiled=True)
        found = [d for d in found if max(d.box.width, d.box.height) >= self.config.min_face_px]
        if not found:
            return None
        if previous is not None:
            best = max(found, key=lambda d: d.box.iou(previous.box))
            if best.box.iou(previous.box) > 0.1:
                return best
        return max(found, key=lambda d: d.box.width * d.box.height)

    def prepare(self, item: MediaItem, folder: Path) -> int:
        from streamdetect.faces.crop import landmarks_in_crop

        cfg = self.config
        crops = {s: [] for s in cfg.sizes}
        marks, numbers = [], []
        previous = None
        for number, rgb in read_frames(item.path, cfg):
            det = self.main_face(rgb, previous)
            if det is None:  # frames without a face are skipped, as in the paper
                continue
            previous = det
            for s in cfg.sizes:
                crops[s].append(align_crop(rgb, det, s, style=cfg.crop))
            (points,), presence = self.mesh.landmarks_with_presence(rgb, [det])
            if presence[0] < 0.5:  # the mesh saw no face in the box: no landmarks rather than wrong ones
                points = np.full_like(points, np.nan)
            marks.append(landmarks_in_crop(points, det, style=cfg.crop))
            numbers.append(number)
            if len(numbers) >= cfg.frames:
                break
        if not numbers:
            raise DatasetError(f"{item.path}: no face of at least {cfg.min_face_px} px was found")
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for s in cfg.sizes:
            np.save(tmp / f"crops_{s}.npy", np.stack(crops[s]))
        np.save(tmp / "landmarks.npy", np.stack(marks).astype(np.float32))
        np.save(tmp / "frames.npy", np.asarray(numbers, np.int32))
        meta = {"key": folder.name, **_item_json(item), "frames": len(numbers), "sizes": list(cfg.sizes), "sampling": cfg.sampling,
                "crop": cfg.crop}
        (tmp / "meta.json").write_text(json.dumps(meta))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        return len(numbers)


def _refresh_meta(path: Path, item: MediaItem) -> None:
    """Labels and identities come from the dataset's files (e.g. an edited IDENTITY_GROUPS.tsv): a rerun
    updates them in place without recomputing crops."""
    meta = json.loads(path.read_text())
    fresh = _item_json(item)
    if any(meta.get(k) != v for k, v in fresh.items()):
        path.write_text(json.dumps({**meta, **fresh}))
        log.info("%s: updated its labels/identity from the dataset", path.parent.name)


def _item_json(item: MediaItem) -> dict:
    d = asdict(item)
    d["path"] = str(item.path)
    d["related"] = list(item.related)
    return d


_worker: _Preparer | None = None


def _init_worker(config: PrepareConfig) -> None:
    global _worker
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _worker = _Preparer(config)


def _close_worker() -> None:
    global _worker
    if _worker is not None:
        _worker.detector.close()  # MediaPipe complains when its graph is collected at interpreter exit
        _worker = None


def _run_one(job):
    item, folder = job
    try:
        return item, _worker.prepare(item, folder), None
    except DatasetError as exc:
        return item, 0, str(exc)
    except Exception as exc:  # one bad file must not stop a thousand-video job
        return item, 0, f"{item.path}: {type(exc).__name__}: {exc}"


def _results(jobs, config: PrepareConfig):
    """(item, frames, error) per job, in this process or in `workers` spawned processes (not forked: MediaPipe's
    graph threads do not survive a fork). A worker that dies (a crash inside a decoder) fails its items
    instead of hanging the run."""
    if not jobs:
        return
    if config.workers <= 1 or len(jobs) == 1:
        _init_worker(config)
        try:
            yield from map(_run_one, jobs)
        finally:
            _close_worker()
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(config.workers, mp.get_context("spawn"), _init_worker, (config,)) as pool:
        futures = {pool.submit(_run_one, job): job for job in jobs}
        for future in as_completed(futures):
            try:
                yield future.result()
            except BrokenProcessPool as exc:
                item = futures[future][0]
                yield item, 0, f"{item.path}: the worker process died ({exc}); rerun prepare to retry it"


# -- whole dataset ------------------------------------------------------------------------------------------------
def prepare_dataset(root: str | Path, out: str | Path, layout: str = "auto", config: PrepareConfig | None = None,
                    limit: int | None = None, progress: bool = True, **reader_options) -> PrepareReport:
    """Prepare every item of a dataset into `out`; items already prepared with the same settings are skipped."""
    from streamdetect.training.progress import progress_bar

    config = config or PrepareConfig()
    root, out = Path(root), Path(out)
    items = read_dataset(root, layout, **reader_options)
    key_root = Path(reader_options.get("media") or root.parent) if root.is_file() else root  # a manifest file
    if limit:
        items = items[:limit]
    out.mkdir(parents=True, exist_ok=True)
    settings = {"root": str(root.resolve()), "layout": layout, **asdict(config)}
    settings.pop("workers")
    previous = out / "prepare.json"
    if previous.exists() and json.loads(previous.read_text()) != json.loads(json.dumps(settings)):
        raise DatasetError(f"{out} was prepared with other settings ({previous}); use a new output folder "
                           f"or delete it to start over")
    previous.write_text(json.dumps(settings, indent=1))

    report = PrepareReport(out)
    jobs = []
    for item, key in zip(items, item_keys(items, key_root)):
        folder = out / "items" / key
        if (folder / "meta.json").exists():
            report.skipped_existing += 1
            _refresh_meta(folder / "meta.json", item)
        else:
            jobs.append((item, folder))
    bar = progress_bar(total=len(jobs), desc="prepare", unit="item", enabled=progress)
    errors = []
    for item, n, error in _results(jobs, config):
        if error:
            report.failed.append((str(item.path), error))
            errors.append({"path": str(item.path), "error": error})
        else:
            report.prepared += 1
            report.frames += n
        bar.update(1)
        bar.set_postfix(frames=report.frames, failed=len(report.failed))
    bar.close()
    with open(out / "errors.jsonl", "w") as f:
        for e in errors:
            f.write(json.dumps(e) + "\n")
    write_manifest(out)
    if report.prepared + report.skipped_existing == 0:
        raise DatasetError(f"none of the {len(items)} items of {root} could be prepared; first error: "
                           f"{report.failed[0][1] if report.failed else 'none'}")
    return report


def write_manifest(out: Path) -> Path:
    rows = [json.loads(p.read_text()) for p in sorted((out / "items").glob("*/meta.json"))
            if not p.parent.name.endswith(".tmp")]  # a crash leaves <key>.tmp behind
    path = out / "manifest.jsonl"
    with open(path, "w") as f:
        for key_row in rows:
            f.write(json.dumps(key_row) + "\n")
    return path


def read_manifest(folder: str | Path) -> list[dict]:
    """The prepared items of a folder made by prepare_dataset, each with its `key` and `folder`."""
    folder = Path(folder)
    path = folder / "manifest.jsonl"
    if not path.exists():
        raise DatasetError(f"{folder} is not a prepared dataset (no manifest.jsonl); "
                           f"make one with: streamdetect prepare DATASET {folder}")
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            row["folder"] = str(folder / "items" / row["key"])
            rows.append(row)
    return rows
