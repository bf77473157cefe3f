"""The HTTP API over the event store (served by server.py, behind the same token as the WebSocket).

    GET    /api/events?stream=&verdict=&since=&until=&min_confidence=&limit=&offset=
    GET    /api/events/{id}
    GET    /api/events/{id}/clip.mp4        (Range requests answered with 206, so players can seek)
    GET    /api/events/{id}/thumbnail.jpg
    DELETE /api/events/{id}

Every answer is JSON except the two files; errors are {"error": "..."} with a 4xx status that names the problem.
"""

from __future__ import annotations

import asyncio
import http
import json
import re
from pathlib import Path
from urllib.parse import parse_qs

from streamdetect.events.store import EventFilter

_ROUTE = re.compile(r"^/api/events(?:/(\d+)(?:/(clip\.mp4|thumbnail\.jpg))?)?/?$")
_NUMBERS = {"since": float, "until": float, "min_confidence": float, "limit": int, "offset": int}


class ApiError(Exception):
    def __init__(self, status: http.HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def _filter(query: str) -> EventFilter:
    raw = parse_qs(query)
    unknown = sorted(set(raw) - {"stream", "verdict", "token", *_NUMBERS})
    if unknown:
        raise ApiError(http.HTTPStatus.BAD_REQUEST, f"unknown query parameter(s) {unknown}; allowed: stream, "
                                                    f"verdict, since, until, min_confidence, limit, offset")
    args = {}
    for key, values in raw.items():
        if key == "token":
            continue
        value = values[-1]
        if key in _NUMBERS:
            try:
                value = _NUMBERS[key](value)
            except ValueError:
                raise ApiError(http.HTTPStatus.BAD_REQUEST,
                               f"{key} must be a {'number' if _NUMBERS[key] is float else 'whole number'}, "
                               f"got {value!r}") from None
        args[key] = value
    try:
        return EventFilter(**args)
    except ValueError as exc:
        raise ApiError(http.HTTPStatus.BAD_REQUEST, str(exc)) from None


async def handle(recorder, method: str, path: str, query: str,
                 range_header: str | None = None) -> tuple[http.HTTPStatus, bytes, str, dict[str, str]]:
    """Route one request; returns (status, body, content type, extra headers)."""
    try:
        status, body, content_type = await _route(recorder, method, path, query)
    except ApiError as exc:
        return exc.status, json.dumps({"error": str(exc)}).encode(), "application/json", {}
    if content_type == "video/mp4":  # players seek with Range requests
        return _ranged(body, range_header)
    return status, body, content_type, {}


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _ranged(body: bytes, range_header: str | None):
    """RFC 9110 single byte ranges for clips (`bytes=a-b`, `bytes=a-`, `bytes=-n`); anything else gets it all."""
    size, headers = len(body), {"Accept-Ranges": "bytes"}
    match = _RANGE.match((range_header or "").strip())
    if not match or match.groups() == ("", ""):
        return http.HTTPStatus.OK, body, "video/mp4", headers
    first, last = match.groups()
    start, end = (size - int(last), size - 1) if first == "" else (int(first), min(int(last), size - 1) if last else size - 1)
    start = max(0, start)
    if start >= size or start > end:
        headers["Content-Range"] = f"bytes */{size}"
        return http.HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, b"", "video/mp4", headers
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return http.HTTPStatus.PARTIAL_CONTENT, body[start:end + 1], "video/mp4", headers


async def _route(recorder, method: str, path: str, query: str):
    if recorder is None:
        raise ApiError(http.HTTPStatus.NOT_FOUND, "the event store is disabled (events.enabled: false)")
    match = _ROUTE.match(path)
    if not match:
        raise ApiError(http.HTTPStatus.NOT_FOUND, "no such endpoint: see /api/events, /api/events/ID, "
                                                  "/api/events/ID/clip.mp4, /api/events/ID/thumbnail.jpg")
    event_id, file = match.groups()
    store = recorder.store
    if event_id is None:
        if method != "GET":
            raise ApiError(http.HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on /api/events; use GET")
        f = _filter(query)
        events, total = await asyncio.to_thread(store.list, f)
        more = f.offset + len(events) < total
        return _json({"events": events, "total": total, "limit": f.limit, "offset": f.offset,
                      "next_offset": f.offset + len(events) if more else None})
    event_id = int(event_id)
    if method == "DELETE" and file is None:
        if not await asyncio.to_thread(recorder.delete, event_id):
            raise ApiError(http.HTTPStatus.NOT_FOUND, f"no event {event_id}")
        return _json({"deleted": event_id})
    if method != "GET":
        raise ApiError(http.HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed here; use GET (or DELETE "
                                                           f"/api/events/{event_id})")
    if file is None:
        event = await asyncio.to_thread(store.get, event_id)
        if event is None:
            raise ApiError(http.HTTPStatus.NOT_FOUND, f"no event {event_id}")
        return _json(event)
    if file == "thumbnail.jpg":
        data = await asyncio.to_thread(store.file, event_id, "thumbnail")
        if data is None:
            raise ApiError(http.HTTPStatus.NOT_FOUND, f"event {event_id} has no thumbnail (or does not exist)")
        return http.HTTPStatus.OK, data, "image/jpeg"
    clip = await asyncio.to_thread(store.file, event_id, "clip")
    if clip is None or not Path(clip).is_file():
        event = await asyncio.to_thread(store.get, event_id)
        state = event["clip_state"] if event else None
        raise ApiError(http.HTTPStatus.NOT_FOUND, f"no event {event_id}" if event is None else
                       f"event {event_id} has no clip (clip state: {state}{'; it is still recording' if state == 'pending' else ''})")
    return http.HTTPStatus.OK, await asyncio.to_thread(Path(clip).read_bytes), "video/mp4"


def _json(data) -> tuple[http.HTTPStatus, bytes, str]:
    return http.HTTPStatus.OK, json.dumps(data).encode(), "application/json"
