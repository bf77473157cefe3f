"""Client side: the Python client library, `streamdetect watch` (terminal) and `streamdetect guard` (video calls).

The dashboard (clients/dashboard/) installs as streamdetect.dashboard; this folder installs as streamdetect.clients.

    from streamdetect.clients import StreamDetectClient, AlertEvent
"""

from streamdetect.clients.library import (AlertEvent, AuthError, ConnectionEvent, ConnectionFailed, ErrorEvent, Event,
                                          FaceEvent, HelloEvent, PreviewEvent, ScoresEvent, StatusEvent,
                                          StreamDetectClient, TrackEndEvent, UnknownEvent, parse_event)

__all__ = ["AlertEvent", "AuthError", "ConnectionEvent", "ConnectionFailed", "ErrorEvent", "Event", "FaceEvent",
           "HelloEvent", "PreviewEvent", "ScoresEvent", "StatusEvent", "StreamDetectClient", "TrackEndEvent",
           "UnknownEvent", "parse_event"]
