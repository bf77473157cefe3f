"""Dashboard uploads: a video sent over the `/upload` WebSocket is stored under a server-chosen name inside the
upload folder, scanned with the live pipeline's engine, and removed; only the annotated result stays (the 5
newest), for playback at /uploads/<id>.mp4.

Protocol (JSON text frames, then binary chunks):
  client: {"type": "upload", "name": "clip.mp4", "size": 1234567}      then the file as binary frames (<= 2 MiB)
  server: {"type": "upload_progress", "stage": "receiving"|"queued"|"scanning", "done": n, "total": m}
  server: {"type": "upload_result", "result": {scan JSON}, "video": "/uploads/<id>.mp4"}
  server: {"type": "upload_error", "message": "..."}                  (then closes)
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
import uuid
from pathlib import Path

from streamdetect.errors import StreamDetectError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
KEEP_RESULTS = 5
MAX_PENDING = 2  # uploads received or queued at once; more are refused (each may hold upload_max_mb on disk)
RECEIVE_TIMEOUT_S = 60
RESULT_NAME = re.compile(r"^[0-9a-f]{32}\.mp4$")


class UploadError(StreamDetectError):
    """An upload was refused or could not be scanned; the message is shown to the user."""


class Uploads:
    def __init__(self, scan_file, max_bytes: int, folder: str | Path | None = None):
        self.scan_file = scan_file  # (path, annotate_path, progress(done, total)) -> scan result dict (blocking)
        self.max_bytes = max_bytes
        self._own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="streamdetect-uploads-")).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._one_at_a_time = asyncio.Lock()  # scans are CPU-heavy: queue them behind each other
        self.pending = 0

    def result_path(self, name: str) -> Path | None:
        """The annotated video for /uploads/<name>, or None: only server-made names inside the folder resolve."""
        if not RESULT_NAME.match(name):
            return None
        path = self.folder / name
        return path if path.is_file() else None

    def close(self) -> None:
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    async def handle(self, ws) -> None:
        if self.pending >= MAX_PENDING:
            await ws.send(json.dumps({"type": "upload_error", "message": "the server is busy with other uploads; try again shortly"}))
            return
        self.pending += 1
        try:
            await self._handle(ws)
        except UploadError as exc:
            await ws.send(json.dumps({"type": "upload_error", "message": str(exc)}))
        except TimeoutError:
            await ws.send(json.dumps({"type": "upload_error", "message": f"no data for {RECEIVE_TIMEOUT_S} s: upload abandoned"}))
        finally:
            self.pending -= 1

    async def _handle(self, ws) -> None:
        header = _parse_header(await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT_S))
        name, size = header["name"], header["size"]
        if Path(name).suffix.lower() not in VIDEO_SUFFIXES:
            raise UploadError(f"{name}: not a video file type we accept ({', '.join(VIDEO_SUFFIXES)})")
        if size > self.max_bytes:
            raise UploadError(f"{name} is {size / 1e6:.1f} MB; the limit is {self.max_bytes / 1e6:.0f} MB")
        token = uuid.uuid4().hex
        # The stored name is ours, never the user's: nothing can be written outside the folder.
        source = self.folder / f"{token}.upload{Path(name).suffix.lower()}"
        result_file = self.folder / f"{token}.mp4"
        try:
            await self._receive(ws, source, size)
            await _progress(ws, "queued", 0, 0)
            async with self._one_at_a_time:
                result = await self._scan(ws, source, result_file)
            result["video"] = name
            await ws.send(json.dumps({"type": "upload_result", "result": result, "video": f"/uploads/{result_file.name}"}))
            self._prune()
        except BaseException:
            result_file.unlink(missing_ok=True)
            raise
        finally:
            source.unlink(missing_ok=True)  # the upload itself never outlives its scan

    async def _receive(self, ws, path: Path, size: int) -> None:
        done, last_report = 0, 0
        with path.open("wb") as f:
            while done < size:
                chunk = await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT_S)
                if isinstance(chunk, str):
                    raise UploadError("expected the file's bytes as binary frames after the upload header")
                done += len(chunk)
                if done > size:
                    raise UploadError(f"received more than the announced {size} bytes")
                f.write(chunk)
                if done - last_report >= 1 << 20 or done == size:
                    last_report = done
                    await _progress(ws, "receiving", done, size)

    async def _scan(self, ws, source: Path, result_file: Path) -> dict:
        loop = asyncio.get_running_loop()

        def progress(done: int, total: int) -> None:
            if done % 10 == 0 or done == total:
                asyncio.run_coroutine_threadsafe(_progress(ws, "scanning", done, total), loop)

        try:
            return await asyncio.to_thread(self.scan_file, source, result_file, progress)
        except Exception as exc:  # whatever went wrong, the user gets a message rather than a dropped socket
            raise UploadError(f"could not scan the video: {exc}") from exc

    def _prune(self) -> None:
        results = sorted((p for p in self.folder.glob("*.mp4") if RESULT_NAME.match(p.name)), key=lambda p: p.stat().st_mtime)
        for old in results[:-KEEP_RESULTS]:
            old.unlink(missing_ok=True)


def _parse_header(text) -> dict:
    try:
        header = json.loads(text)
        name, size = header["name"], header["size"]
        ok = header.get("type") == "upload" and isinstance(name, str) and isinstance(size, int) and size > 0
    except (TypeError, ValueError, KeyError):
        ok = False
    if not ok:
        raise UploadError('start with {"type": "upload", "name": "clip.mp4", "size": BYTES}, then send the bytes')
    return header


async def _progress(ws, stage: str, done: int, total: int) -> None:
    await ws.send(json.dumps({"type": "upload_progress", "stage": stage, "done": done, "total": total}))
