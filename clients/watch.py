"""`streamdetect watch ws://HOST:PORT`: the live service in a terminal.

A table of streams (state, fps, latency p95, dropped frames) and their faces (track, confidence, verdict),
redrawn in place on a terminal and printed as one block per second when piped (a log stays readable); or,
with --json, every message as one JSON line (the raw message) for scripts. It reconnects when the service goes
away; an unreachable service at start or a refused token exits with status 2 and one line saying why.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from collections import deque

from streamdetect.clients.library import (AlertEvent, AuthError, ConnectionEvent, ConnectionFailed, Event, HelloEvent,
                                 ScoresEvent, StatusEvent, StreamDetectClient, TrackEndEvent, redact)

# Previews are whole JPEG frames: useless in a terminal, so not asked for unless --types names them.
DEFAULT_TYPES = ("scores", "alert", "status", "track_end", "error")
CLEAR_SCREEN = "\x1b[H\x1b[2J"
STALE_FACES_S = 2.0  # faces of a stream that sent no scores for this long are not shown any more


class WatchView:
    """What the table shows, updated from events; `render` turns it into text."""

    def __init__(self, url: str):
        self.url = url
        self.connection = "connecting"
        self.model = ""
        self.streams: dict[str, StatusEvent | None] = {}
        self.scores: dict[str, tuple[float, ScoresEvent]] = {}
        self.alerts: deque[AlertEvent] = deque(maxlen=5)

    def apply(self, event: Event) -> None:
        if isinstance(event, ConnectionEvent):
            retry = f", retrying in {event.retry_in:.1f} s" if event.retry_in is not None else ""
            self.connection = "connected" if event.state == "connected" else f"DISCONNECTED ({event.detail}{retry})"
        elif isinstance(event, HelloEvent):
            m = event.model
            self.model = f"{m.get('backbone', '?')}@{m.get('input_size', '?')} W={m.get('window', '?')}"
            self.streams = {name: self.streams.get(name) for name in event.streams}
        elif isinstance(event, StatusEvent):
            self.streams[event.stream] = event
        elif isinstance(event, ScoresEvent):
            self.scores[event.stream] = (time.monotonic(), event)
        elif isinstance(event, AlertEvent):
            self.alerts.append(event)
        elif isinstance(event, TrackEndEvent) and event.stream in self.scores:
            seen, scores = self.scores[event.stream]
            faces = tuple(f for f in scores.faces if f.track != event.track)
            self.scores[event.stream] = (seen, dataclasses.replace(scores, faces=faces))

    def render(self) -> str:
        now = time.monotonic()
        lines = [f"streamdetect watch {self.url}  [{self.connection}]  {self.model}  {time.strftime('%H:%M:%S')}",
                 f"{'STREAM':<16}{'STATE':<14}{'FPS in/proc':>13}{'p95 ms':>9}{'DROPPED':>9}{'FACES':>7}"]
        for name, status in self.streams.items():
            if status is None:
                lines.append(f"{name:<16}{'?':<14}")
            else:
                fps = f"{status.input_fps:.1f}/{status.processed_fps:.1f}"
                p95 = "-" if status.latency_p95 is None else f"{status.latency_p95:.0f}"
                lines.append(f"{name:<16}{status.state:<14}{fps:>13}{p95:>9}{status.dropped_frames:>9}{status.faces:>7}")
                if status.detail:
                    lines.append(f"    ! {status.detail}")
            seen, scores = self.scores.get(name, (0.0, None))
            if scores is not None and now - seen < STALE_FACES_S:
                for f in scores.faces:
                    conf = "  -  " if f.confidence is None else f"{f.confidence:.3f}"
                    flags = f"  ({', '.join(f.flags)})" if f.flags else ""
                    lines.append(f"    face #{f.track:<5} confidence {conf}  {f.verdict:<10} {f.frames} frames{flags}")
        if self.alerts:
            lines.append("recent alerts:")
            for a in self.alerts:
                lines.append(f"    {time.strftime('%H:%M:%S', time.localtime(a.ts))} {a.stream} face #{a.track}: "
                             f"{a.previous} -> {a.verdict} (confidence {a.confidence:.3f})")
        return "\n".join(lines)


async def _print_json(client: StreamDetectClient) -> None:
    async for event in client:
        if isinstance(event, ConnectionEvent):  # not a server message: stderr, so stdout stays pure JSON lines
            print(f"streamdetect watch: {event.state}: {event.detail}", file=sys.stderr, flush=True)
        else:
            print(json.dumps(event.raw, separators=(",", ":")), flush=True)


async def _show_table(client: StreamDetectClient, view: WatchView) -> None:
    tty = sys.stdout.isatty()

    async def draw() -> None:
        shown = None
        while True:
            await asyncio.sleep(0.2 if tty else 1.0)
            text = view.render()
            if tty and text != shown:  # redraw in place, only when something changed (no flicker)
                sys.stdout.write(CLEAR_SCREEN + text + "\n")
            elif not tty:  # a pipe or a log: one block per second, never escape codes
                sys.stdout.write(text + "\n\n")
            shown = text
            sys.stdout.flush()

    drawer = asyncio.create_task(draw())
    try:
        async for event in client:
            view.apply(event)
    finally:
        drawer.cancel()


async def watch(args: argparse.Namespace) -> None:
    types = args.types.split(",") if args.types else DEFAULT_TYPES
    client = StreamDetectClient(args.url, token=args.token, streams=args.stream or None, types=types, fail_fast=True)
    async with client:
        if args.json:
            await _print_json(client)
        else:
            await _show_table(client, WatchView(redact(client.url)))


def run(args: argparse.Namespace) -> int:
    try:
        asyncio.run(watch(args))
    except AuthError as exc:
        print(f"streamdetect watch: error: {exc}; pass the service's token with --token", file=sys.stderr)
        return 2
    except ConnectionFailed as exc:
        print(f"streamdetect watch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends
    except BrokenPipeError:  # `streamdetect watch --json | head`: the reader left; do not fail flushing at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("url", help="the service, e.g. ws://127.0.0.1:8765 (the /ws path is added)")
    p.add_argument("--stream", action="append", metavar="NAME", help="only this stream; repeatable (default: all)")
    p.add_argument("--json", action="store_true", help="print every message as one JSON line instead of the table")
    p.add_argument("--token", help="the service's shared token (sent as 'Authorization: Bearer T')")
    p.add_argument("--types", help=f"comma-separated message types (default: {','.join(DEFAULT_TYPES)})")
    p.set_defaults(fn=run)
    return p


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `watch` on the `streamdetect` command's subparsers."""
    return configure(subparsers.add_parser("watch", help="live table of a running service's streams and faces "
                                                         "(or --json lines)"))


def main(argv: list[str] | None = None) -> int:
    args = configure(argparse.ArgumentParser(prog="streamdetect watch", description=__doc__.split("\n\n")[0])).parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
