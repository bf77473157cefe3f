"""Redis: the one place cluster state lives (wanted streams, placement, checkpoints, message streams).

Every key starts with a prefix (default "sd") so several clusters can share one Redis:
  {p}:wanted          hash   stream name -> source spec (JSON: url, name, transport, realtime, loop)
  {p}:place           hash   stream name -> group id
  {p}:group:{gid}     set    the streams a group runs (read by the group itself when Ray restarts it)
  {p}:groups          hash   group id -> JSON {"node": node id it was placed on}
  {p}:ckpt:{stream}   string the stream's last checkpoint (tracker, per-face (h, c), windows, scorers)
  {p}:msgs:{stream}   stream the stream's messages, capped (MAXLEN ~) at about `REPLAY_S` seconds
  {p}:card            string the model card (JSON) the scorers run: gateways build `hello` from it
"""

from __future__ import annotations

from dataclasses import dataclass

from streamdetect.errors import StreamDetectError

REPLAY_S = 30.0


class ClusterError(StreamDetectError):
    """A cluster-mode problem with a message that says what to do (unreachable Redis or Ray, bad stream...)."""


@dataclass(frozen=True)
class Keys:
    prefix: str = "sd"

    @property
    def wanted(self) -> str:
        return f"{self.prefix}:wanted"

    @property
    def place(self) -> str:
        return f"{self.prefix}:place"

    @property
    def groups(self) -> str:
        return f"{self.prefix}:groups"

    @property
    def card(self) -> str:
        return f"{self.prefix}:card"

    def group(self, gid: str) -> str:
        return f"{self.prefix}:group:{gid}"

    def ckpt(self, stream: str) -> str:
        return f"{self.prefix}:ckpt:{stream}"

    def msgs(self, stream: str) -> str:
        return f"{self.prefix}:msgs:{stream}"

    def stream_of(self, key: str) -> str:
        return key.split(":msgs:", 1)[1]


def maxlen(scores_hz: float, preview_hz: float, status_interval_s: float, replay_s: float = REPLAY_S) -> int:
    """Entries for ~replay_s seconds of one stream's messages (+ room for alerts, track ends, errors)."""
    per_s = scores_hz + preview_hz + 1.0 / max(status_interval_s, 0.1) + 2.0
    return max(100, int(per_s * replay_s))


def connect(url: str, timeout: float = 3.0):
    """A sync Redis client that answered PING; ClusterError naming the URL otherwise."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=max(timeout, 5.0),
                                  health_check_interval=30)
    try:
        client.ping()
    except (redis.exceptions.RedisError, OSError, ValueError) as exc:
        raise ClusterError(f"cannot reach Redis at {url}: {exc}; start redis-server or pass --redis URL") from exc
    return client


async def connect_async(url: str, timeout: float = 3.0):
    import redis
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_connect_timeout=timeout, health_check_interval=30)
    try:
        await client.ping()
    except (redis.exceptions.RedisError, OSError, ValueError) as exc:
        await client.aclose()
        raise ClusterError(f"cannot reach Redis at {url}: {exc}; start redis-server or pass --redis URL") from exc
    return client


def text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
