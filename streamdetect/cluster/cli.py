"""`streamdetect cluster …`: run the service over a Ray cluster (see streamdetect/cluster/__init__.py).

    streamdetect cluster serve                        # one machine: 2 emulated nodes, private Redis, dashboard
    streamdetect cluster up --address HEAD:6379 --redis redis://HOST:6379/0
    streamdetect cluster add-stream rtsp://cam1/… --name cam1
    streamdetect cluster gateway --redis redis://HOST:6379/0 --port 8765   # as many as you like
    streamdetect cluster status | remove-stream NAME | down | bench
"""

from __future__ import annotations

import argparse
import json

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def _common(p: argparse.ArgumentParser, ray_address: bool = True, redis: bool = True) -> None:
    if redis:  # the director knows Redis: commands that talk to it need only the Ray address
        p.add_argument("--redis", default=DEFAULT_REDIS, help=f"Redis URL (default {DEFAULT_REDIS})")
        p.add_argument("--prefix", default="sd", help="key prefix in Redis (several clusters can share one Redis)")
    if ray_address:
        p.add_argument("--address", default="auto", help="Ray cluster: auto (the local `ray start` cluster), HOST:PORT of the "
                       "head node, or ray://HOST:10001")


def _config(args):
    from streamdetect.cli import _service_config

    return _service_config(args)


def _director(args):
    from streamdetect.cluster.director import connect_ray, get_director

    connect_ray(args.address)
    return get_director()


def cmd_up(args) -> int:
    import ray

    from streamdetect.cluster.director import connect_ray, start_director
    from streamdetect.cluster.store import connect

    connect(args.redis)  # a clear error before anything starts
    connect_ray(args.address)
    start_director(args.redis, args.prefix, config=_config(args), streams_per_group=args.streams_per_group,
                   scorers=args.scorers, model=args.model, backend=args.backend or "onnxruntime")
    nodes = [n for n in ray.nodes() if n["Alive"]]
    print(f"cluster up: director running on {len(nodes)} node(s); Redis {args.redis} prefix {args.prefix!r}\n"
          f"  add streams:  streamdetect cluster add-stream URL --name NAME\n"
          f"  dashboard:    streamdetect cluster gateway --redis {args.redis}")
    return 0


def cmd_add(args) -> int:
    import ray

    placed = ray.get(_director(args).add_stream.remote(args.source, args.name, args.realtime, args.loop,
                                                       args.transport))
    print(f"{placed['stream']}: running on group {placed['group']}, node {placed['node'][:12]}")
    return 0


def cmd_remove(args) -> int:
    import ray

    existed = ray.get(_director(args).remove_stream.remote(args.name))
    print(f"{args.name}: removed" if existed else f"{args.name}: no such stream")
    return 0 if existed else 1


def cmd_status(args) -> int:
    import ray

    director = _director(args)
    streams = ray.get(director.streams.remote())
    if args.json:
        print(json.dumps({"streams": streams, "failovers": ray.get(director.failover_log.remote()),
                          "scorers": ray.get(director.scorer_stats.remote())}, indent=2))
        return 0
    print(f"{'stream':16} {'node':14} {'group':10} {'state':13} {'faces':>5} {'frame':>7}  note")
    for name, row in sorted(streams.items()):
        note = row.get("error") or (f"resumed from checkpoint {row['restored_from']}" if row.get("restored_from") is not None else "")
        print(f"{name:16} {str(row.get('node'))[:12]:14} {str(row.get('group')):10} {row.get('state', '?'):13} "
              f"{row.get('faces', 0):>5} {row.get('frame', -1):>7}  {note}")
    for f in ray.get(director.failover_log.remote()):
        print(f"failover: node {str(f['node'])[:12]} lost, {', '.join(f['streams'])} moved in {f['took_s']} s")
    return 0


def cmd_down(args) -> int:
    import ray

    director = _director(args)
    ray.get(director.shutdown.remote())
    ray.kill(director, no_restart=True)
    print("cluster down: groups, scorers and director stopped (the wanted streams stay in Redis)")
    return 0


def _banner(host: str, port: int, what: str) -> str:
    host = f"[{host}]" if ":" in host else host
    return (f"streamdetect {what}: dashboard at http://{host}:{port}/\n  WebSocket: ws://{host}:{port}/ws\n"
            f"  health:    http://{host}:{port}/healthz")


def cmd_gateway(args) -> int:
    import asyncio

    from streamdetect.cli import serve_until_signalled
    from streamdetect.cluster.gateway import Gateway

    config = _config(args)
    only = {n for n in (args.streams or "").split(",") if n} or None
    gateway = Gateway(args.redis, args.prefix, config, events=args.events, only=only)

    def ready(port):
        print(_banner(config.server.host, port, "cluster gateway") + "\n  Ctrl-C or SIGTERM stops", flush=True)

    return asyncio.run(serve_until_signalled(gateway, ready))


def cmd_serve(args) -> int:
    """Everything on this machine: emulated nodes, a private Redis, the director, the streams and one gateway."""
    import asyncio
    import dataclasses

    from streamdetect.cli import serve_until_signalled
    from streamdetect.cluster.gateway import Gateway
    from streamdetect.cluster.local import LocalCluster
    from streamdetect.config import SourceConfig
    from streamdetect.service import sample_clip

    config = _config(args)
    sources = config.sources or (SourceConfig(str(sample_clip()), "sample", realtime=True, loop=True),)
    sources = tuple(dataclasses.replace(s, name=s.name or f"source{i + 1}") for i, s in enumerate(sources))
    with LocalCluster(args.nodes, sources, args.redis, args.prefix, config=dataclasses.replace(config, sources=()),
                      streams_per_group=args.streams_per_group, backend=args.backend or "onnxruntime",
                      model=args.model) as lc:
        gateway = Gateway(lc.redis_url, args.prefix, config, events=config.events.enabled)

        def ready(port):
            lines = [_banner(config.server.host, port, f"cluster ({args.nodes} nodes on this machine)")]
            for i in range(1, len(lc.nodes)):
                lines.append(f"  node {i + 1}: raylet pid {lc.raylet_pid(i)} (kill -9 it to see its streams fail over)")
            lines.append(f"  Redis:     {lc.redis_url}\n  Ctrl-C or SIGTERM stops")
            print("\n".join(lines), flush=True)

        return asyncio.run(serve_until_signalled(gateway, ready))


def cmd_bench(args) -> int:
    from streamdetect.cluster.bench import run

    return run(args)


def register(subparsers) -> None:
    """Add `cluster` and its subcommands to the `streamdetect` parser's subparsers."""
    from streamdetect.cli import _add_runtime_args

    cluster = subparsers.add_parser("cluster", help="run the service over a Ray cluster with Redis fan-out (see docs/cluster.md)")
    sub = cluster.add_subparsers(dest="cluster_command", required=True)

    p = sub.add_parser("up", help="start the director (and scorer pool) on a running Ray cluster")
    _common(p)
    p.add_argument("--streams-per-group", type=int, default=4, help="streams one group actor runs (default 4)")
    p.add_argument("--scorers", type=int, default=1, help="scorer actors (default 1; one per GPU)")
    _add_runtime_args(p)
    p.set_defaults(fn=cmd_up)

    p = sub.add_parser("add-stream", help="want a stream: the director starts it on the least-loaded node")
    _common(p, redis=False)
    p.add_argument("source", help="file, rtsp://, http(s)://, lavfi:… (as `serve --source`)")
    p.add_argument("--name", help="stream name (default streamN)")
    p.add_argument("--transport", default="tcp", choices=("tcp", "udp"))
    p.add_argument("--realtime", action="store_true", help="pace files to their timestamps")
    p.add_argument("--loop", action="store_true", help="restart files when they end")
    p.set_defaults(fn=cmd_add)

    p = sub.add_parser("remove-stream", help="stop a stream and forget it")
    _common(p, redis=False)
    p.add_argument("name")
    p.set_defaults(fn=cmd_remove)

    p = sub.add_parser("status", help="streams, their nodes and states; failovers; scorer batching")
    _common(p, redis=False)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_status)

    p = sub.add_parser("down", help="stop groups, scorers and the director (wanted streams stay in Redis)")
    _common(p, redis=False)
    p.set_defaults(fn=cmd_down)

    p = sub.add_parser("gateway", help="a WebSocket gateway: the ordinary dashboard and messages, fed from Redis")
    _common(p, ray_address=False)
    p.add_argument("--config", help="service YAML (server, events, scoring)")
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--token", help="require this shared token from clients")
    p.add_argument("--events", action="store_true", help="this gateway writes the event store (one per cluster)")
    p.add_argument("--streams", help="serve only these streams (comma-separated; default: all)")
    p.set_defaults(fn=cmd_gateway)

    p = sub.add_parser("serve", help="the cluster on this machine: emulated nodes, private Redis, one gateway")
    p.add_argument("--source", action="append", help="repeatable (default: the bundled sample clip)")
    p.add_argument("--transport", default="tcp", choices=("tcp", "udp"))
    p.add_argument("--realtime", action="store_true")
    p.add_argument("--loop", action="store_true")
    p.add_argument("--nodes", type=int, default=2, help="emulated Ray nodes (default 2)")
    p.add_argument("--redis", help="Redis URL (default: a private redis-server for this run)")
    p.add_argument("--prefix", default="sd")
    p.add_argument("--streams-per-group", type=int, default=2)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--token")
    _add_runtime_args(p)
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("bench", help="streams on 1 emulated node vs 2 vs the single-process service")
    p.add_argument("--streams", type=int, action="append", help="repeatable (default 2 and 4)")
    p.add_argument("--seconds", type=float, default=20.0, help="measuring time per case")
    p.add_argument("--json", metavar="OUT")
    p.set_defaults(fn=cmd_bench)
