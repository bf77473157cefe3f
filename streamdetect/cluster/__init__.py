"""Cluster mode: the single-process service split over a Ray cluster, with Redis as the shared state and fan-out.

    stream groups (Ray actors, K streams each)      scorer pool (Ray actors)          gateways (any number)
    decode, detect, track, crop, (h, c) per face ──► batched encode / step calls ──►  …
      │ checkpoint every ~1 s: SET sd:ckpt:<stream>      (stateless: (h, c) in and out)
      └── messages: XADD sd:msgs:<stream> MAXLEN ~ ───────────────────────────────► XREAD → Bus → WebSocket
    director (detached Ray actor): the wanted streams (HSET sd:wanted) and their placement (sd:place, sd:group:<id>)

Nothing here changes `streamdetect serve`; see docs/cluster.md.
"""

NAMESPACE = "streamdetect"
DIRECTOR = "streamdetect-director"
