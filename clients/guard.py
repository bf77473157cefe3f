"""`streamdetect guard`: the video-call alert plugin.

Watches a running service (--url) or runs one in-process on a source (--source: the call window's screen
region, a virtual camera, a recording) and raises ONE alert per suspicious participant face: a line on stdout,
a desktop notification where the platform has a command for it, and a webhook POST. Faces are debounced per
(stream, track): a face alerts once, and again only if its verdict fell back and returned after --cooldown
seconds, so a score hovering at the threshold never floods a channel. The service replays its recent alerts to
every new subscriber; those are history, not news: a face that alerted before the guard (re)connected and is still
in the call is alerted from its scores (with the replayed thumbnail), one that has left is not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from streamdetect import __version__
from streamdetect.clients.library import (AlertEvent, AuthError, ConnectionFailed, Event, HelloEvent, ScoresEvent, StatusEvent,
                                 StreamDetectClient, TrackEndEvent)
from streamdetect.errors import StreamDetectError
from streamdetect.retry import Backoff

GUARD_TYPES = ("alert", "scores", "track_end", "status")  # scores: faces already alerting when the guard joins


@dataclass(frozen=True)
class GuardOptions:
    url: str | None = None
    source: str | None = None
    name: str = "call"  # stream name of --source
    config: str | None = None  # YAML service config for --source (model, scoring thresholds, ...)
    model: str | None = None
    backend: str | None = None
    webhook: str | None = None
    token: str | None = None
    notify: bool = True
    min_confidence: float = 0.0
    cooldown: float = 60.0
    suspicious: bool = False  # also alert on "suspicious", not only "alert"
    webhook_attempts: int = 3
    webhook_timeout: float = 5.0


@dataclass(frozen=True)
class FaceAlert:
    stream: str
    track: int
    verdict: str
    confidence: float | None
    ts: float
    thumbnail: str | None  # base64 JPEG of the face (null when the guard joined after the alert message)

    def payload(self) -> dict:
        """The webhook's JSON body."""
        return {"stream": self.stream, "track": self.track, "verdict": self.verdict, "confidence": self.confidence,
                "ts": self.ts, "thumbnail": self.thumbnail}

    def line(self) -> str:
        conf = "?" if self.confidence is None else f"{self.confidence:.2f}"
        when = time.strftime("%H:%M:%S", time.localtime(self.ts))
        return f"{when} ALERT stream={self.stream} face=#{self.track} verdict={self.verdict} confidence={conf}"


class Debouncer:
    """One alert per (stream, track); again only after the face stopped qualifying and `cooldown` s passed."""

    def __init__(self, cooldown: float):
        self.cooldown = cooldown
        self.last: dict[tuple[str, int], float] = {}  # key -> when it last alerted
        self.rearmed: set[tuple[str, int]] = set()

    def check(self, key: tuple[str, int], qualifies: bool, now: float) -> bool:
        if not qualifies:
            if key in self.last:
                self.rearmed.add(key)
            return False
        if key in self.last and not (key in self.rearmed and now - self.last[key] >= self.cooldown):
            return False
        self.last[key] = now
        self.rearmed.discard(key)
        return True

    def forget(self, key: tuple[str, int]) -> None:  # the face left: its track id will not come back
        self.last.pop(key, None)
        self.rearmed.discard(key)


# -- outputs -------------------------------------------------------------------------------------------------------
def desktop_notify(title: str, body: str) -> None:
    """notify-send (Linux) or osascript (macOS); silently nothing where neither exists."""
    if sys.platform == "darwin" and shutil.which("osascript"):
        quote = lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'  # noqa: E731 (AppleScript string)
        command = ["osascript", "-e", f"display notification {quote(body)} with title {quote(title)}"]
    elif shutil.which("notify-send"):
        command = ["notify-send", "--urgency=critical", title, body]
    else:
        return
    try:
        subprocess.run(command, timeout=5, check=False, capture_output=True)
    except (OSError, subprocess.TimeoutExpired):
        pass  # a notification is a courtesy: never let it stop the guard


def post_webhook(url: str, payload: dict, attempts: int = 3, timeout: float = 5.0, backoff: float = 0.5) -> str:
    """POST JSON with retries (exponential backoff + jitter) on network errors, 5xx and 429; blocking, standard
    library only (call it in a thread). Returns '' on success, else the last problem."""
    body = json.dumps(payload).encode()
    problem, pacing = "", Backoff(initial_s=backoff, max_s=float("inf"))
    for attempt in range(attempts):
        if attempt:
            time.sleep(pacing.delay(attempt - 1))
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": f"streamdetect-guard/{__version__}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
            return ""
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code} {exc.reason}"
            if exc.code < 500 and exc.code != 429:
                return problem  # the receiver refuses this request: sending it again will not help
        except (urllib.error.URLError, OSError) as exc:
            problem = str(getattr(exc, "reason", exc))
    return f"{problem} (after {attempts} attempts)"


# -- the guard ----------------------------------------------------------------------------------------------------
class Guard:
    def __init__(self, options: GuardOptions, out=None):
        self.options = options
        self.out = out or sys.stdout
        self.levels = {"alert", "suspicious"} if options.suspicious else {"alert"}
        self.debouncer = Debouncer(options.cooldown)
        self.connected_at: float | None = None  # server clock at this connection's hello: older alerts are replays
        self.frames: dict[tuple[str, int], int] = {}  # usable frames per face: only grows while it is the same face
        self.thumbnails: dict[tuple[str, int], str] = {}  # from alerts (replayed ones too), for alerts raised by scores
        self.states: dict[str, str] = {}  # stream -> state last reported on stderr
        self.sent: list[FaceAlert] = []
        self._tasks: set[asyncio.Task] = set()

    def _qualifies(self, verdict: str, confidence: float | None) -> bool:
        return verdict in self.levels and confidence is not None and confidence >= self.options.min_confidence

    def handle(self, event: Event) -> list[FaceAlert]:
        """Feed one event; returns the alerts it raised (and starts delivering them)."""
        now = time.monotonic()
        raised = []
        if isinstance(event, HelloEvent):
            self.connected_at = event.ts
        elif isinstance(event, AlertEvent):
            key = (event.stream, event.track)
            if event.thumbnail:
                self.thumbnails[key] = event.thumbnail
            live = self.connected_at is None or event.ts >= self.connected_at
            if live and self.debouncer.check(key, self._qualifies(event.verdict, event.confidence), now):
                raised.append(FaceAlert(event.stream, event.track, event.verdict, event.confidence, event.ts,
                                        event.thumbnail))
        elif isinstance(event, ScoresEvent):
            for face in event.faces:
                key = (event.stream, face.track)
                if face.frames < self.frames.get(key, 0):  # a new face under an old id: the service restarted
                    self.debouncer.forget(key)
                self.frames[key] = face.frames
                if self.debouncer.check(key, self._qualifies(face.verdict, face.confidence), now):
                    raised.append(FaceAlert(event.stream, face.track, face.verdict, face.confidence, event.ts,
                                            self.thumbnails.get(key)))
        elif isinstance(event, StatusEvent) and self.states.get(event.stream) != event.state:
            self.states[event.stream] = event.state  # say when a stream is not watched (e.g. a wrong screen region)
            print(f"streamdetect guard: {event.stream}: {event.state}" + (f": {event.detail}" if event.detail else ""),
                  file=sys.stderr, flush=True)
        elif isinstance(event, TrackEndEvent):
            key = (event.stream, event.track)
            self.debouncer.forget(key)
            self.frames.pop(key, None)
            self.thumbnails.pop(key, None)
        for alert in raised:
            self._deliver(alert)
        return raised

    def _deliver(self, alert: FaceAlert) -> None:
        self.sent.append(alert)
        print(alert.line(), file=self.out, flush=True)
        if self.options.notify:
            self._spawn(asyncio.to_thread(desktop_notify, "StreamDetect: possible deepfake",
                                          f"{alert.stream}: face #{alert.track} {alert.verdict} "
                                          f"(confidence {alert.confidence or 0:.2f})"))
        if self.options.webhook:
            self._spawn(self._post(alert))

    async def _post(self, alert: FaceAlert) -> None:
        o = self.options
        problem = await asyncio.to_thread(post_webhook, o.webhook, alert.payload(), o.webhook_attempts, o.webhook_timeout)
        if problem:
            print(f"streamdetect guard: webhook {o.webhook} failed for {alert.stream} face #{alert.track}: {problem}",
                  file=sys.stderr, flush=True)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)  # deliveries run beside the event loop: a slow webhook never delays the next
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for deliveries still in flight (webhook retries) before exiting."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)


def _service_config(options: GuardOptions, token: str):
    import dataclasses

    from streamdetect.config import ServiceConfig, SourceConfig, load_config
    from streamdetect.sources import parse_source

    spec = parse_source(options.source, options.name)  # a missing file or bad URL fails here, before models load
    base = load_config(options.config) if options.config else ServiceConfig()
    changes = {"sources": (SourceConfig(options.source, options.name, realtime=not spec.live),),  # a recording plays as live
               # Loopback, any free port, a fresh token: the service exists only for this guard.
               "server": dataclasses.replace(base.server, host="127.0.0.1", port=0, token=token)}
    changes.update({k: getattr(options, k) for k in ("model", "backend") if getattr(options, k)})
    return dataclasses.replace(base, **changes)


async def run_guard(options: GuardOptions, engine=None, detector=None, stop: asyncio.Event | None = None,
                    out=None) -> Guard:
    """Run until `stop` is set, Ctrl-C, or (with --source) the source has ended; returns the Guard (its `sent`)."""
    service, url, token = None, options.url, options.token
    guard = Guard(options, out)
    try:
        if options.source:
            from streamdetect.service import Service

            token = secrets.token_urlsafe(16)
            service = Service(_service_config(options, token), engine, detector)
            url = f"ws://127.0.0.1:{await service.start()}/ws"
        client = StreamDetectClient(url, token=token, types=GUARD_TYPES, fail_fast=True)

        async def close_on_stop() -> None:  # ends the `async for` below
            await (stop or asyncio.Event()).wait()
            await client.close()

        stopper = asyncio.create_task(close_on_stop())
        try:
            async with client:
                async for event in client:
                    guard.handle(event)
                    if service is not None and isinstance(event, StatusEvent) and event.state in ("ended", "offline"):
                        if event.state == "offline":
                            raise ConnectionFailed(f"source {options.source}: {event.detail}", retryable=False)
                        break  # a recording has been watched to its end
        finally:
            stopper.cancel()
            await guard.drain()
    finally:
        if service is not None:
            await service.stop()
    return guard


def run(args: argparse.Namespace) -> int:
    options = GuardOptions(url=args.url, source=args.source, name=args.name, config=args.config, model=args.model,
                           backend=args.backend, webhook=args.webhook, token=args.token, notify=args.notify,
                           min_confidence=args.min_confidence, cooldown=args.cooldown, suspicious=args.suspicious)
    what = options.url or f"{options.source} (in-process service)"
    print(f"streamdetect guard: watching {what}; alerts on {'suspicious and alert' if options.suspicious else 'alert'}"
          + (f", webhook {options.webhook}" if options.webhook else ""), file=sys.stderr, flush=True)
    try:
        asyncio.run(run_guard(options))
    except AuthError as exc:
        print(f"streamdetect guard: error: {exc}; pass the service's token with --token", file=sys.stderr)
        return 2
    except (StreamDetectError, ValueError, OSError) as exc:
        print(f"streamdetect guard: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running service, e.g. ws://127.0.0.1:8765")
    where.add_argument("--source", help="run the detector here on screen:…, webcam:N or a file (e.g. the call window)")
    p.add_argument("--name", default="call", help="stream name of --source (default: call)")
    p.add_argument("--config", help="YAML service configuration for --source (model, faces, scoring)")
    p.add_argument("--model", help="--source: checkpoint or export directory (default: the bundled model)")
    p.add_argument("--backend", help="--source: auto (default), onnxruntime, tensorrt or torch")
    p.add_argument("--webhook", metavar="URL", help="POST each alert as JSON to this URL (3 attempts)")
    p.add_argument("--token", help="--url: the service's shared token")
    p.add_argument("--notify", action=argparse.BooleanOptionalAction, default=True,
                   help="desktop notification via notify-send (Linux) or osascript (macOS); default on, "
                        "skipped where absent")
    p.add_argument("--min-confidence", type=float, default=0.0, metavar="X", help="only faces at or above X (default 0)")
    p.add_argument("--cooldown", type=float, default=60.0, metavar="S",
                   help="seconds before the same face may alert again after clearing (default 60)")
    p.add_argument("--suspicious", action="store_true", help='also alert on verdict "suspicious", not only "alert"')
    p.set_defaults(fn=run)
    return p


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `guard` on the `streamdetect` command's subparsers."""
    return configure(subparsers.add_parser("guard", help="video-call plugin: one alert per suspicious face "
                                                         "(stdout, desktop notification, webhook)"))


def main(argv: list[str] | None = None) -> int:
    args = configure(argparse.ArgumentParser(prog="streamdetect guard", description=__doc__.split("\n\n")[0])).parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
