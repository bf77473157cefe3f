"""The director: a detached, named Ray actor that keeps the wanted streams (in Redis) and places them on groups.

Placement: a new stream goes to the alive node running the fewest streams, into one of its groups with room
(fewer than `streams_per_group`), or into a new group pinned to that node.

Failover: a monitor thread checks every `monitor_s` which nodes are alive (Ray's GCS) and that every group
answers. The streams of a group whose node died (or which died itself) are handed to the least-loaded group
still alive, which is already warm (MediaPipe and the pipeline imported), so a stream is back in about the time
the GCS needs to declare the node dead plus one frame; each resumes from its last checkpoint in Redis. Groups
are not restarted by Ray (max_restarts=0): one owner of failover, so a stream never runs twice. The director
holds no state Redis does not: restarted, it finds its groups and scorers again by name.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid

from streamdetect import messages as msg
from streamdetect.cluster import DIRECTOR, NAMESPACE
from streamdetect.cluster.group import group_actor, group_name
from streamdetect.cluster.scorer import scorer_actor, scorer_name
from streamdetect.cluster.store import ClusterError, Keys, connect, maxlen, text
from streamdetect.config import ServiceConfig, SourceConfig

log = logging.getLogger(__name__)

GROUP_START_S = 120.0  # a group's first start loads MediaPipe and imports the pipeline


class Director:
    def __init__(self, redis_url: str, prefix: str = "sd", config: ServiceConfig | None = None,
                 streams_per_group: int = 4, scorers: int = 1, model: str | None = None,
                 backend: str = "onnxruntime", max_faces: int = 64, wait_ms: float = 2.0, checkpoint_s: float = 1.0,
                 scorer_node: str | None = None, monitor_s: float = 0.25):
        import ray

        self.redis_url, self.keys = redis_url, Keys(prefix)
        self.redis = connect(redis_url)
        self.config = config or ServiceConfig()
        self.per_group, self.checkpoint_s, self.monitor_s = streams_per_group, checkpoint_s, monitor_s
        sc = self.config.server
        self.maxlen = maxlen(sc.scores_hz, sc.preview_hz, sc.status_interval_s)
        self.scorer_names = [scorer_name(i) for i in range(scorers)]
        options = dict(namespace=NAMESPACE, lifetime="detached", get_if_exists=True, max_restarts=-1,
                       max_task_retries=-1, num_cpus=0, max_concurrency=1000)
        if scorer_node:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(scorer_node, soft=True)
        self.scorers = [scorer_actor().options(name=n, **options).remote(model, backend, max_faces, wait_ms)
                        for n in self.scorer_names]
        self.redis.set(self.keys.card, ray.get(self.scorers[0].card.remote()))
        self.lock = threading.RLock()
        self.groups: dict[str, object] = {}  # gid -> actor handle
        self.nodes: dict[str, str] = {}  # gid -> node the group runs on
        self.failovers: list[dict] = []  # {"group", "node", "streams", "to", "at", "took_s"}
        for gid, spec in self.redis.hgetall(self.keys.groups).items():  # a restarted director: find its groups
            gid = text(gid)
            try:
                self.groups[gid] = ray.get_actor(group_name(gid), namespace=NAMESPACE)
                self.nodes[gid] = json.loads(spec)["node"]
            except ValueError:
                self.nodes[gid] = json.loads(spec)["node"]
                self.groups[gid] = None  # gone: the monitor moves its streams
        self._stop = threading.Event()
        self._last_ping = 0.0
        self._monitor = threading.Thread(target=self._watch, name="director-monitor", daemon=True)
        self._monitor.start()

    # -- groups -------------------------------------------------------------------------------------------
    def _new_group(self, node: str | None) -> str:
        gid = uuid.uuid4().hex[:8]
        options = dict(name=group_name(gid), namespace=NAMESPACE, lifetime="detached", max_restarts=0,
                       num_cpus=0, max_concurrency=16)
        if node is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            # hard: a group lives on the node it was placed on; if that node dies while it starts, the start
            # fails (ActorDiedError / unschedulable) and _place tries another node
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        self.groups[gid] = group_actor().options(**options).remote(
            gid, self.redis_url, self.keys.prefix, self.config, self.scorer_names, self.checkpoint_s)
        self.nodes[gid] = node
        self.redis.hset(self.keys.groups, gid, json.dumps({"node": node}))
        return gid

    def _alive_nodes(self) -> list[str]:
        import ray

        return [n["NodeID"] for n in ray.nodes() if n["Alive"] and n.get("Resources", {}).get("CPU", 0) > 0]

    def _placed(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for gid in self.redis.hvals(self.keys.place):
            counts[text(gid)] = counts.get(text(gid), 0) + 1
        return counts

    def groups_info(self, timeout: float = 5.0) -> dict[str, dict]:
        """gid -> the group's own report (node, streams, states); {"error": ...} for one that does not answer."""
        import ray

        # A snapshot: this read runs without the lock while add_stream/the monitor may add or drop a group (the
        # actor is threaded), and iterating the live dict then raised "dictionary changed size during iteration".
        groups = list(self.groups.items())
        refs = {gid: g.info.remote() for gid, g in groups if g is not None}
        out = {gid: {"gid": gid, "node": self.nodes.get(gid), "error": "lost"} for gid, g in groups if g is None}
        for gid, ref in refs.items():
            try:
                out[gid] = ray.get(ref, timeout=timeout)
            except Exception as exc:
                out[gid] = {"gid": gid, "node": self.nodes.get(gid), "error": f"{type(exc).__name__}: {exc}"[:300]}
        return out

    def _choose(self, exclude: set[str] = frozenset(), warm: bool = False) -> tuple[str | None, str]:
        """(gid or None for a new group, node) for a stream. warm: any live group (failover), room or not."""
        alive = self._alive_nodes()
        nodes = [n for n in alive if n not in exclude] or alive
        if not nodes:
            raise ClusterError("no alive Ray node with CPUs to run a stream group")
        placed = self._placed()
        live = {gid: self.nodes[gid] for gid, g in self.groups.items() if g is not None and self.nodes.get(gid) in nodes}
        load = {n: sum(placed.get(g, 0) for g, gn in live.items() if gn == n) for n in nodes}
        if warm and live:
            gid = min(live, key=lambda g: (load[live[g]], placed.get(g, 0)))
            return gid, live[gid]
        node = min(nodes, key=lambda n: (load[n], nodes.index(n)))
        room = [g for g, gn in live.items() if gn == node and placed.get(g, 0) < self.per_group]
        return (room[0] if room else None), node

    def _assign(self, name: str, gid: str) -> dict:
        import ray

        self.redis.sadd(self.keys.group(gid), name)
        self.redis.hset(self.keys.place, name, gid)
        info = ray.get(self.groups[gid].add_stream.remote(name), timeout=GROUP_START_S)
        self.nodes[gid] = info["node"]
        self.redis.hset(self.keys.groups, gid, json.dumps({"node": info["node"]}))
        return {"stream": name, "group": gid, "node": info["node"]}

    def _unassign(self, name: str, gid: str) -> None:
        self.redis.srem(self.keys.group(gid), name)
        self.redis.hdel(self.keys.place, name)

    def _drop_group(self, gid: str) -> list[str]:
        """Forget a dead group; returns the streams it ran."""
        import ray

        handle = self.groups.pop(gid, None)
        self.nodes.pop(gid, None)
        if handle is not None:
            try:
                ray.kill(handle, no_restart=True)
            except Exception:
                pass
        streams = sorted(text(s) for s in self.redis.smembers(self.keys.group(gid)))
        self.redis.delete(self.keys.group(gid))
        self.redis.hdel(self.keys.groups, gid)
        for name in streams:
            self.redis.hdel(self.keys.place, name)
        return streams

    # -- failover -----------------------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.wait(self.monitor_s):
            try:
                self.heal()
            except Exception:
                log.exception("director monitor")

    def heal(self) -> list[dict]:
        """Move the streams of groups on dead nodes (or dead groups) to live groups; place unplaced streams."""
        import ray

        alive = set(self._alive_nodes())
        moved = []
        with self.lock:
            dead = [gid for gid, g in self.groups.items() if g is None or self.nodes.get(gid) not in alive]
            if time.monotonic() - self._last_ping > 2.0:  # a group that died on a live node (crash, OOM)
                self._last_ping = time.monotonic()
                refs = {gid: g.info.remote() for gid, g in self.groups.items() if gid not in dead and g is not None}
                ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=2.0)
                for gid, ref in refs.items():
                    if ref in ready:
                        try:
                            ray.get(ref)
                        except ray.exceptions.RayActorError:
                            dead.append(gid)
                        except Exception:
                            pass  # an error in info(), not a dead group
            for gid in dead:
                t0, node = time.monotonic(), self.nodes.get(gid)
                streams = self._drop_group(gid)
                wanted = [n for n in streams if self.redis.hexists(self.keys.wanted, n)]
                for name in wanted:
                    self._status(name, "reconnecting", f"node {str(node)[:12]} lost; resuming on another node")
                targets = self._place_many(wanted, exclude={node} if node else set())
                record = {"group": gid, "node": node, "streams": streams, "to": targets, "at": time.time(),
                          "took_s": round(time.monotonic() - t0, 3)}
                self.failovers.append(record)
                moved.append(record)
                log.warning("failover: group %s on node %s lost; streams %s moved: %s", gid, node, streams, targets)
            placed = {text(k) for k in self.redis.hkeys(self.keys.place)}
            for name in (text(n) for n in self.redis.hkeys(self.keys.wanted)):
                if name not in placed:
                    self._place(name)
        return moved

    def _place_many(self, names: list[str], exclude: set[str]) -> list[dict]:
        """Failover: start all of a lost group's streams at once on warm groups, one by one where that fails."""
        import ray

        started, out = {}, []
        for name in names:
            try:
                gid, node = self._choose(exclude, warm=True)
            except ClusterError:
                break
            if gid is None:
                break  # no live group: cold starts, one by one below
            self.redis.sadd(self.keys.group(gid), name)
            self.redis.hset(self.keys.place, name, gid)
            started[name] = (gid, self.groups[gid].add_stream.remote(name))
        for name, (gid, ref) in started.items():
            try:
                info = ray.get(ref, timeout=GROUP_START_S)
                self.nodes[gid] = info["node"]
                out.append({"stream": name, "group": gid, "node": info["node"]})
            except Exception as exc:
                log.warning("%s: group %s failed to resume it: %s", name, gid, exc)
                self._unassign(name, gid)
        done = {o["stream"] for o in out}
        for name in names:
            if name not in done:
                try:
                    out.append(self._place(name, warm=True, exclude=exclude))
                except ClusterError as exc:
                    log.warning("%s: %s", name, exc)
        return out

    def _place(self, name: str, warm: bool = False, exclude: set[str] = frozenset()) -> dict:
        """Start a wanted stream on a group, retrying once on another node; a status message says what failed."""
        failed: set[str] = set(exclude)
        last = None
        for _attempt in range(2):
            gid, node = self._choose(failed, warm=warm)
            if gid is None:
                gid = self._new_group(node)
            try:
                return self._assign(name, gid)
            except Exception as exc:  # the node died while the group started, or the group cannot start at all
                last = exc
                log.warning("%s: group %s on node %s failed to start it: %s", name, gid, node, exc)
                self._status(name, "connecting", f"group {gid} on node {str(node)[:12]} failed "
                                                  f"({type(exc).__name__}); placing elsewhere")
                self._unassign(name, gid)
                failed.add(node)
                warm = False
        self._status(name, "offline", f"no stream group could start this stream ({type(last).__name__}: "
                                      f"{str(last)[:200]})")
        raise ClusterError(f"stream {name!r} could not be started on any node: {last}")

    # -- streams ------------------------------------------------------------------------------------------
    def add_stream(self, url: str, name: str | None = None, realtime: bool = False, loop: bool = False,
                   transport: str = "tcp") -> dict:
        """Want a stream and start it on a group; returns {"stream", "group", "node"} or raises ClusterError."""
        source = SourceConfig(url, name, transport, realtime, loop)  # validates
        with self.lock:
            name = name or f"stream{self.redis.hlen(self.keys.wanted) + 1}"
            if self.redis.hexists(self.keys.wanted, name):
                raise ClusterError(f"a stream named {name!r} exists already; remove it first or choose another name")
            spec = {"url": url, "name": name, "transport": source.transport, "realtime": realtime, "loop": loop}
            self.redis.hset(self.keys.wanted, name, json.dumps(spec))
            self.redis.delete(self.keys.ckpt(name), self.keys.msgs(name))  # a new stream starts with a clean log
            self._status(name, "connecting", "placing on a stream group")
            try:
                return self._place(name)
            except ClusterError:
                self.redis.hdel(self.keys.wanted, name)  # not wanted any more: the status message says why
                raise

    def remove_stream(self, name: str) -> bool:
        import ray

        with self.lock:
            gid = text(self.redis.hget(self.keys.place, name))
            existed = bool(self.redis.hdel(self.keys.wanted, name))
            if gid is not None:
                self._unassign(name, gid)
                if self.groups.get(gid) is not None:
                    try:
                        ray.get(self.groups[gid].remove_stream.remote(name), timeout=30)
                    except Exception as exc:
                        log.warning("%s: group %s did not confirm the removal: %s", name, gid, exc)
            self.redis.delete(self.keys.ckpt(name))
            self._status(name, "ended", "removed from the cluster")
            return existed

    def streams(self) -> dict[str, dict]:
        """name -> {"url", "group", "node", "state", "faces", "frame", "restored_from" | "error"}."""
        wanted = {text(k): json.loads(v) for k, v in self.redis.hgetall(self.keys.wanted).items()}
        place = {text(k): text(v) for k, v in self.redis.hgetall(self.keys.place).items()}
        groups = self.groups_info()
        out = {}
        for name, spec in wanted.items():
            gid = place.get(name)
            g = groups.get(gid, {})
            row = {"url": spec["url"], "group": gid, "node": g.get("node")}
            row.update(g.get("streams", {}).get(name, {}))
            if "error" in g:
                row["error"] = g["error"]
            out[name] = row
        return out

    def restored(self, name: str) -> dict | None:
        """The checkpoint the stream's current run resumed from (see StreamGroup.restored)."""
        import ray

        gid = text(self.redis.hget(self.keys.place, name))
        if gid is None or self.groups.get(gid) is None:
            return None
        try:
            return ray.get(self.groups[gid].restored.remote(name), timeout=10)
        except Exception:  # its group is being replaced
            return None

    def failover_log(self) -> list[dict]:
        return list(self.failovers)

    def scorer_stats(self) -> list[dict]:
        import ray

        return ray.get([s.stats.remote() for s in self.scorers], timeout=10)

    def shutdown(self) -> None:
        """Stop every group's streams and end groups and scorers (the wanted streams stay in Redis)."""
        import ray

        self._stop.set()
        with self.lock:
            for gid, g in list(self.groups.items()):
                if g is not None:
                    try:
                        ray.get(g.stop_all.remote(), timeout=30)
                    except Exception:
                        pass
                self._drop_group(gid)
            for s in self.scorers:
                ray.kill(s, no_restart=True)

    def ping(self) -> float:
        return time.time()

    def _status(self, name: str, state: str, detail: str) -> None:
        m = msg.Status(name, state, 0.0, 0.0, None, 0, 0, 0, detail)
        self.redis.xadd(self.keys.msgs(name), {"t": m.type, "f": -1, "j": m.to_json()}, maxlen=self.maxlen,
                        approximate=True)


def director_actor():
    import ray

    return ray.remote(Director)


def start_director(redis_url: str, prefix: str = "sd", **options):
    """The running director (found by name), or a new detached one on this node. Returns its handle."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    handle = director_actor().options(
        name=DIRECTOR, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, max_restarts=-1,
        max_task_retries=-1, num_cpus=0, max_concurrency=8,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True)).remote(
        redis_url, prefix, scorer_node=node, **options)
    ray.get(handle.ping.remote(), timeout=GROUP_START_S)
    return handle


def get_director():
    import ray

    try:
        return ray.get_actor(DIRECTOR, namespace=NAMESPACE)
    except ValueError:
        raise ClusterError("no director is running: start one with `streamdetect cluster up`") from None


def connect_ray(address: str | None, **init) -> None:
    """ray.init against `address` ("auto", host:port, ray://...) with a clear error when nothing answers."""
    import socket

    import ray

    if ray.is_initialized():
        return
    if address and address not in ("auto", "local") and not address.startswith("ray://"):
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=3).close()
        except (OSError, ValueError) as exc:
            raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc}; start it with `ray start --head` "
                               f"or pass --address HOST:PORT of its head node") from exc
    try:
        ray.init(address=None if address == "local" else address, namespace=NAMESPACE, logging_level="WARNING",
                 log_to_driver=False, **init)
    except (ConnectionError, RuntimeError) as exc:
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: {exc}") from exc
