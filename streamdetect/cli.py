"""The `streamdetect` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from streamdetect.errors import StreamDetectError


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from streamdetect.model.backbones import BACKBONES

    p.add_argument("--backbone", default="resnext50_32x4d", choices=list(BACKBONES), help="frame encoder (default: the paper's)")
    p.add_argument("--input-size", type=int, default=112, help="face crop size in pixels (a multiple of 16, 96-320)")
    p.add_argument("--hidden-size", type=int, default=2048, help="LSTM hidden size (paper: 2048)")
    p.add_argument("--fusion", action="store_true", help="concatenate CNN features with the LSTM output before the FC")
    p.add_argument("--pretrained", action="store_true", help="start from the packaged ImageNet weights (mobilenet_v2, efficientnet_lite0)")
    p.add_argument("--backbone-weights", metavar="PATH", help="a torchvision weights file for the backbone")


def cmd_init(args) -> int:
    from streamdetect.model import ModelConfig, new_model, save_checkpoint
    from streamdetect.model.backbones import import_torch

    torch = import_torch("`streamdetect init`")

    torch.manual_seed(args.seed)
    config = ModelConfig(backbone=args.backbone, input_size=args.input_size, hidden_size=args.hidden_size, fusion=args.fusion)
    model = new_model(config, pretrained_backbone=args.backbone_weights or args.pretrained)
    print(f"wrote {save_checkpoint(model, args.out)} ({config})")
    return 0


def cmd_export(args) -> int:
    from streamdetect.export import export_model

    _require("export", "torch", "onnx")

    for report in export_model(args.checkpoint, args.out, fmt=args.format, fp16=args.fp16, max_faces=args.max_faces):
        print(f"validated {report}")
    print(f"exported to {args.out}")
    if args.int8:
        from streamdetect.export.quantize import quantize_export

        result = quantize_export(args.out, prepared=args.calibration or ())
        print(f"INT8 preferred: {result['prefer'] == 'int8'} (the reasons above; evidence in {args.out}/int8.json)")
    return 0


def cmd_bench(args) -> int:
    from streamdetect.bench.engines import default_model, describe, format_table, run_bench, write_json

    model = args.model or default_model()
    desc = describe(model)
    results = run_bench(model, args.backend or None, args.batch or None, min_seconds=args.seconds)
    if not results:
        print("no backend could run the model (see warnings above)", file=sys.stderr)
        return 1
    print(format_table(results, desc))
    if args.json:
        write_json(results, args.json, desc)
    return 0


def cmd_bench_live(args) -> int:
    from streamdetect.bench import hardware
    from streamdetect.bench.engines import default_model, describe
    from streamdetect.bench.live import as_dicts, format_table, header, run_bench_live
    from streamdetect.engines import available_backends

    model = args.model or default_model()
    backends = args.backend or [b for b in available_backends() if b in ("onnxruntime", "torch", "tensorrt")]
    try:
        cases = [tuple(int(x) for x in c.lower().split("x")) for c in args.case or []]
    except ValueError:
        raise SystemExit(f"streamdetect bench-live: error: --case takes STREAMSxFACES such as 4x1, got {args.case}")
    results = run_bench_live(model, backends, tuple(args.faces or (1, 2, 4, 8)), tuple(args.streams or (1, 2, 3, 4)),
                             args.seconds, capacity=args.capacity, cases=cases or None)
    desc = describe(model)
    print(header(desc, args.capacity))
    print(format_table(results))
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps({"hardware": hardware.describe(), "load": hardware.load(),
                                               "capacity": args.capacity, "model": desc,
                                               "results": as_dicts(results)}, indent=2) + "\n")
    return 0


def cmd_backends(args) -> int:
    from streamdetect.engines.registry import BACKENDS, unavailable_reason

    for name in BACKENDS:
        reason = unavailable_reason(name)
        print(f"{name:<12} {'available' if reason is None else 'unavailable: ' + reason}")
    return 0


def cmd_card(args) -> int:
    from pathlib import Path

    from streamdetect.engines.layout import INT8_FILE
    from streamdetect.export import CARD_FILE
    from streamdetect.loading import prebuilt_export
    from streamdetect.model import ModelCard, read_card

    path = Path(args.model)
    card = ModelCard.from_json((path / CARD_FILE).read_text(), str(path)) if path.is_dir() else read_card(path)
    out = json.loads(card.to_json())
    # Which graphs run INT8 on CPU, and why, lives beside the export (int8.json): show it with the card.
    folder = path if path.is_dir() else prebuilt_export(path)
    if folder is not None and (folder / INT8_FILE).is_file():
        decision = json.loads((folder / INT8_FILE).read_text())
        out["int8"] = {k: decision.get(k) for k in ("prefer", "graphs", "reasons", "machine")}
    print(json.dumps(out, indent=1))
    return 0


def _service_config(args):
    """A ServiceConfig from --config YAML, overridden by any flags given."""
    import dataclasses

    from streamdetect.config import ServiceConfig, SourceConfig, load_config

    cfg = load_config(args.config) if getattr(args, "config", None) else ServiceConfig()
    changes = {}
    if getattr(args, "source", None):
        changes["sources"] = tuple(SourceConfig(url, transport=args.transport, realtime=args.realtime, loop=args.loop)
                                   for url in args.source)
    for key in ("model", "backend", "window"):
        if getattr(args, key, None) is not None:
            changes[key] = getattr(args, key)
    server = {k: getattr(args, k) for k in ("host", "port", "token") if getattr(args, k, None) is not None}
    if server:
        changes["server"] = dataclasses.replace(cfg.server, **server)
    return dataclasses.replace(cfg, **changes) if changes else cfg


def cmd_serve(args) -> int:
    import asyncio

    from streamdetect.service import Service

    service = Service(_service_config(args))

    def ready(port):
        host = service.config.server.host
        if host not in ("127.0.0.1", "localhost", "::1") and not service.config.server.token:
            print(f"WARNING: listening on {host} without a token: anyone who can reach it sees every stream "
                  f"(set --token)", file=sys.stderr)
        print(serve_banner(service, port), flush=True)

    return asyncio.run(serve_until_signalled(service, ready))


def serve_banner(service, port: int) -> str:
    """What `serve` prints once it listens: the dashboard first (on the first line), then the other endpoints."""
    config = service.config
    host = config.server.host
    host = f"[{host}]" if ":" in host else host  # IPv6 literals are bracketed in URLs
    base = f"http://{host}:{port}"
    names = ", ".join(w.name for w in service.pipeline.workers)
    lines = [f"streamdetect serving {names}: dashboard at {base}/",
             f"  WebSocket: ws://{host}:{port}/ws",
             f"  health:    {base}/healthz"]
    if config.server.metrics:
        lines.append(f"  metrics:   {base}/metrics")
    if getattr(getattr(config, "events", None), "enabled", False):
        lines.append(f"  events:    {base}/api/events")
    lines.append("  Ctrl-C or SIGTERM stops")
    return "\n".join(lines)


async def serve_until_signalled(service, on_ready=None) -> int:
    """Run the service until SIGINT or SIGTERM, then stop it gracefully (pipeline, outputs, server) and return 0.

    The handlers are installed on the event loop explicitly, so SIGINT works even when the process started with
    it ignored (a background job of a non-interactive shell, some supervisors). A second signal while stopping
    exits at once with 128 + its number."""
    import asyncio
    import contextlib
    import os
    import signal

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        again = stopping.is_set()
        stopping.set()
        with contextlib.suppress(OSError, ValueError):  # a closed stderr must not keep the service running
            print(f"{name} again: exiting now" if again else f"stopping ({name})…", file=sys.stderr, flush=True)
            sys.stdout.flush()
        if again:
            os._exit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError):  # Windows' loops have no add_signal_handler
            signal.signal(signum, lambda s, _frame: loop.call_soon_threadsafe(on_signal, s))
    port = await service.start()  # a signal meanwhile is handled once it returns
    try:
        if on_ready:
            on_ready(port)
        await stopping.wait()
    finally:
        await service.stop()
    return 0


def _video_frames(path: str) -> int | None:
    """Frame count of a video file from its container (or duration x frame rate when it does not say); None
    when unknown, and for anything but a local file (opening a stream URL here could block)."""
    import os

    import av

    if not os.path.isfile(path):
        return None
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return stream.frames
            rate = stream.average_rate or stream.guessed_rate
            if stream.duration:
                seconds = float(stream.duration * stream.time_base)
            else:
                seconds = (container.duration or 0) / av.time_base
            return (round(seconds * float(rate)) if rate else 0) or None
    except (av.error.FFmpegError, IndexError, OSError, ValueError, TypeError):
        return None


def cmd_scan(args) -> int:
    from tqdm import tqdm

    from streamdetect.scan import format_summary, scan, write_json
    from streamdetect.service import load_runtime
    from streamdetect.sources import parse_source

    parse_source(args.video)  # a missing file or bad URL fails here, before models load
    config = _service_config(args)
    engine, detector = load_runtime(config)
    try:
        # disable=None: no bar at all when stderr is not a terminal (logs, CI), instead of one line per update
        with tqdm(desc=f"scan {args.video}", total=_video_frames(args.video), unit="frame", leave=False,
                  disable=None) as bar:
            result = scan(args.video, config, engine, detector, annotate=args.annotate, progress=bar.update)
    finally:
        detector.close()
    print(format_summary(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    if args.annotate:
        print(f"wrote {args.annotate}")
    return 0


def _add_runtime_args(p) -> None:
    p.add_argument("--config", help="YAML service configuration (flags override it)")
    p.add_argument("--model", help="checkpoint or export directory (default: the bundled model)")
    p.add_argument("--backend", help="auto (default), onnxruntime, tensorrt or torch")
    p.add_argument("--window", type=int, help="frames per score window W (default 20)")


def build_parser() -> argparse.ArgumentParser:
    from streamdetect import __version__
    from streamdetect.engines.registry import BACKENDS
    from streamdetect.export.formats import EXPORT_FORMATS

    parser = argparse.ArgumentParser(prog="streamdetect", description="Real-time deepfake face detection.")
    parser.add_argument("--version", action="version", version=f"streamdetect {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="write a new, randomly initialised model checkpoint")
    p.add_argument("--out", required=True, help="checkpoint path (.safetensors)")
    p.add_argument("--seed", type=int, default=0)
    _add_model_args(p)
    p.set_defaults(fn=cmd_init)

    p = sub.add_parser("export", help="export a checkpoint to validated ONNX graphs (and TensorRT engines)")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--format", default="onnx", choices=list(EXPORT_FORMATS))
    p.add_argument("--fp16", action="store_true", help="TensorRT: build the encoder in FP16")
    p.add_argument("--max-faces", type=int, default=32, help="TensorRT profile: most faces per call")
    p.add_argument("--int8", action="store_true", help="ONNX: also quantise to INT8, kept only where it holds "
                   "accuracy and pays on this CPU (int8.json records why)")
    p.add_argument("--calibration", action="append", metavar="PREPARED_DIR",
                   help="with --int8: prepared folders for calibration and the ΔAUC check (default: the sample clip)")
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("bench", help="encoder and step speed per backend on this machine")
    p.add_argument("--model", help="checkpoint or export directory (default: the bundled model, as serve)")
    p.add_argument("--backend", action="append", choices=list(BACKENDS), help="repeatable; default: all available")
    p.add_argument("--batch", type=int, action="append", help="repeatable; default 1 and 8 (CPU), up to 256 (GPU)")
    p.add_argument("--seconds", type=float, default=2.0, help="minimum measuring time per case")
    p.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("serve", help="run the live service: sources in, per-face confidence out over WebSockets")
    p.add_argument("--source", action="append", help="file, rtsp://, http(s):// (HLS), webcam:N, screen:, lavfi:…; repeatable "
                   "(default: the bundled sample clip)")
    p.add_argument("--transport", default="tcp", choices=("tcp", "udp"), help="RTSP transport")
    p.add_argument("--realtime", action="store_true", help="pace files to their timestamps, as if live")
    p.add_argument("--loop", action="store_true", help="restart files when they end")
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--token", help="require this shared token from clients")
    _add_runtime_args(p)
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("scan", help="score one video file: per-face and whole-video verdicts")
    p.add_argument("video")
    p.add_argument("--json", metavar="OUT", help="write the result as JSON")
    p.add_argument("--annotate", metavar="OUT.mp4", help="write the video with boxes, track ids and confidence")
    _add_runtime_args(p)
    p.set_defaults(fn=cmd_scan)

    p = sub.add_parser("bench-live", help="the whole live pipeline on emulated 720p30 cameras with 1-8 faces, 1-4 streams")
    p.add_argument("--model", help="checkpoint or export directory (default: the bundled model, as serve)")
    p.add_argument("--backend", action="append", choices=list(BACKENDS), help="repeatable; default: all available")
    p.add_argument("--faces", type=int, action="append", help="faces per stream, repeatable (default 1 2 4 8)")
    p.add_argument("--streams", type=int, action="append", help="streams with one face, repeatable (default 1 2 3 4)")
    p.add_argument("--seconds", type=float, default=10.0, help="measuring time per case (after 3 s warm-up)")
    p.add_argument("--capacity", action="store_true", help="files at full speed, wait policy: the most face-frames/s end to end")
    p.add_argument("--case", action="append", metavar="SxF", help="explicit streams x faces case, e.g. 4x1; repeatable")
    p.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    p.set_defaults(fn=cmd_bench_live)

    from streamdetect.clients import guard, watch
    from streamdetect.cluster import cli as cluster_cli
    from streamdetect.training import cli as training_cli

    watch.add_parser(sub)
    guard.add_parser(sub)
    training_cli.add_parsers(sub)
    cluster_cli.register(sub)  # the `cluster` extra's commands (ray and redis are imported when one runs)

    p = sub.add_parser("backends", help="list inference backends and whether they can run here")
    p.set_defaults(fn=cmd_backends)

    p = sub.add_parser("card", help="print the model card of a checkpoint or export directory")
    p.add_argument("model")
    p.set_defaults(fn=cmd_card)
    parser.commands = sub.choices  # name -> subparser, for parse_args' suggestions
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """parse_args with the subcommand's usage and a "did you mean" for a mistyped command or flag (exit code 2)."""
    import difflib

    argv = sys.argv[1:] if argv is None else list(argv)
    commands = parser.commands
    word = next((a for a in argv if not a.startswith("-")), None)  # the top level has flags only: this is the command
    if word is not None and word not in commands:
        close = difflib.get_close_matches(word, commands, n=1)
        if close:
            parser.error(f"unknown command '{word}'; did you mean '{close[0]}'?")
    args, extras = parser.parse_known_args(argv)
    if extras:
        sub = commands[args.command]
        unknown = next((a for a in extras if a.startswith("-")), extras[0])
        flags = [o for action in sub._actions + parser._actions for o in action.option_strings]
        close = difflib.get_close_matches(unknown.split("=", 1)[0], flags, n=1) if unknown.startswith("-") else []
        sub.error(f"unrecognized argument {unknown}" + (f"; did you mean {close[0]}?" if close else ""))
    return args


# Commands that need torch (and friends), and the pip extra that installs what they need. Serving needs none of it.
TORCH_EXTRAS = {"init": "torch", "export": "export", "prepare": "train", "train": "train", "evaluate": "train",
                "lofo": "train"}
TORCH_ONLY = {"torch", "torchvision", "efficientnet_lite_pytorch", "onnx"}
OTHER_EXTRAS = {"ray": "cluster", "redis": "cluster"}  # optional packages of other extras, by import name


def _require(command: str, *packages: str) -> None:
    """Fail before any work when a package the command needs is missing, naming the extra that installs it."""
    import importlib.util

    from streamdetect.errors import MissingDependencyError

    for package in packages:
        if importlib.util.find_spec(package) is None:
            raise MissingDependencyError(package, TORCH_EXTRAS.get(command, "train"), f"`streamdetect {command}`")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("websockets").setLevel(logging.WARNING)  # it logs every HTTP request at INFO
    try:
        try:
            return args.fn(args)
        except ModuleNotFoundError as exc:  # an optional package deep in a command: name the extra that installs it
            package = (exc.name or "").split(".")[0]
            if package not in TORCH_ONLY and package not in OTHER_EXTRAS:
                raise
            from streamdetect.errors import MissingDependencyError

            extra = OTHER_EXTRAS.get(package) or TORCH_EXTRAS.get(args.command, "train")
            raise MissingDependencyError(package, extra, f"`streamdetect {args.command}`") from exc
    except (StreamDetectError, ValueError, OSError) as exc:
        print(f"streamdetect {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
