"""`streamdetect prepare | train | evaluate` subcommands."""

from __future__ import annotations


import json
from pathlib import Path


def cmd_prepare(args) -> int:
    from streamdetect.training.prepare import PrepareConfig, prepare_dataset

    config = PrepareConfig(sizes=tuple(int(s) for s in args.sizes.split(",")), frames=args.frames,
                           sampling=args.sampling, workers=args.workers, crop=args.crop)
    options = {"compression": args.compression} if args.compression else {}
    if args.media:
        options["media"] = args.media
    report = prepare_dataset(args.dataset, args.out, layout=args.layout, config=config, limit=args.limit, **options)
    print(f"prepared {report.prepared} items ({report.frames} face frames), {report.skipped_existing} already done, "
          f"{len(report.failed)} failed -> {report.out}")
    for path, error in report.failed[:20]:
        print(f"  failed: {error}")
    if report.failed:
        print(f"  all failures are listed in {Path(args.out) / 'errors.jsonl'}")
    return 0


def _training_config(args, **overrides):
    """The YAML recipe + --set + the command's flags; refuses a recipe without data."""
    from streamdetect.training.config import load_config

    if args.data:
        overrides["data"] = args.data
    cfg = load_config(args.config, args.set or [], **overrides)
    if not cfg.data:
        raise ValueError("no training data: give prepared folders with --data or `data:` in the config")
    return cfg


def cmd_train(args) -> int:
    from streamdetect.training.train import train

    cfg = _training_config(args, out=args.out, steps=args.steps, device=args.device, seed=args.seed)
    result = train(cfg, resume=args.resume)
    best = Path(cfg.out) / "best.safetensors"
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    print(f"best checkpoint: {best}; evaluate it with: streamdetect evaluate {best} {' '.join(cfg.data)} "
          f"--run {cfg.out} --write-card {Path(cfg.out) / 'model.safetensors'}")
    return 0


def cmd_lofo(args) -> int:
    from streamdetect.training.lofo import load_folds, run_lofo

    cfg = _training_config(args, steps=args.steps, device=args.device)
    run_lofo(cfg, load_folds(args.folds), args.out)
    print((Path(args.out) / "lofo.md").read_text())
    return 0


def cmd_fetch_manifest(args) -> int:
    from streamdetect.training.manifest import fetch_manifest

    counts = fetch_manifest(args.manifest, args.out, base_url=args.base_url)
    print(f"{counts['downloaded']} downloaded, {counts['present']} already present and checked -> {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    from streamdetect.training.evaluate import evaluate

    keys = None
    if args.split == "test":  # the dataset's own test list (FF++ splits, Celeb-DF's testing list)
        from streamdetect.training.prepare import read_manifest

        keys = [r["key"] for folder in args.data for r in read_manifest(folder) if r.get("split") == "test"]
        if not keys:
            raise ValueError(f"{args.data} define no test items; evaluate without --split, or with --run")
    elif args.run:
        split = json.loads((Path(args.run) / "split.json").read_text())
        keys = split["holdout_eval" if args.split == "holdout" else args.split]
    result = evaluate(args.checkpoint, args.data, args.out, keys=keys, window=args.window,
                      min_frames=args.min_frames, sbi=not args.no_sbi,
                      calibrate=not args.use_card, target_fpr=args.target_fpr, write_card=args.write_card,
                      half=args.half)
    print((Path(args.out) / "report.md").read_text())
    if args.write_card:
        c = result["calibration"]["temperature"], result["threshold"]["value"]
        print(f"wrote {args.write_card} with temperature {c[0]} and threshold {c[1]} in its card")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("prepare", help="videos/photos -> aligned face-crop sequences for training")
    p.add_argument("dataset", help="dataset folder (FaceForensics++, Celeb-DF v2, DFDC, real/ + fake/ folders) "
                                   "or a manifest .tsv (file, label, family, identity)")
    p.add_argument("--media", help="with a manifest: the folder its file paths are relative to (default: its own)")
    p.add_argument("out", help="output folder (rerun to resume)")
    p.add_argument("--layout", default="auto",
                   help="faceforensics | celebdf | dfdc | folders | shared | manifest (default: detect)")
    p.add_argument("--sizes", default="112", help="crop sizes, comma-separated, each a multiple of 16 from 96 to 320 (e.g. 112,224)")
    p.add_argument("--frames", type=int, default=150, help="face frames per video (paper: the first 150)")
    p.add_argument("--sampling", default="first", choices=("first", "even"), help="consecutive from the start, or spread")
    p.add_argument("--crop", default="box", choices=("box", "aligned", "mouth"),
                   help="face crop style (must match the model's card; default box)")
    p.add_argument("--compression", help="FaceForensics++ quality folder: c0, c23 or c40")
    p.add_argument("--workers", type=int, default=2, help="videos prepared in parallel")
    p.add_argument("--limit", type=int, help="only the first N items (a quick look)")
    p.set_defaults(fn=cmd_prepare)

    p = sub.add_parser("train", help="train the CNN+LSTM detector on prepared folders")
    p.add_argument("--config", help="YAML training config (see examples/train_default.yaml); defaults are the paper's")
    p.add_argument("--data", nargs="+", help="prepared folders (override the config's)")
    p.add_argument("--out", help="run folder (checkpoints, history)")
    p.add_argument("--steps", type=int)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=int)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one config value, e.g. --set pretrained=false --set model.expression=true")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("lofo", help="leave-one-family-out: train per fold, AUC per held-out generator family")
    p.add_argument("--config", required=True, help="the recipe (YAML training config)")
    p.add_argument("--folds", required=True, help="YAML: fold name -> families/sources to hold out "
                                                   "(see examples/lofo_folds.yaml)")
    p.add_argument("--out", required=True, help="folder for the fold runs and lofo.json/.md/.png (rerun resumes)")
    p.add_argument("--data", nargs="+", help="prepared folders (override the config's)")
    p.add_argument("--steps", type=int, help="training steps per fold")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config value")
    p.set_defaults(fn=cmd_lofo)

    p = sub.add_parser("fetch-manifest", help="download a manifest's media (url or GitHub repo/commit/path), "
                                              "checked by sha256")
    p.add_argument("manifest", help="a manifest .tsv (see streamdetect.training.manifest)")
    p.add_argument("out", help="media folder; files land at OUT/<file column> (rerun resumes)")
    p.add_argument("--base-url", default="https://raw.githubusercontent.com",
                   help="where repo/commit/path rows are downloaded from (a mirror, or a local server in tests)")
    p.set_defaults(fn=cmd_fetch_manifest)

    p = sub.add_parser("evaluate", help="metrics, ROC/EER, table by sequence length, calibration, threshold")
    p.add_argument("checkpoint")
    p.add_argument("data", nargs="+", help="prepared folders")
    p.add_argument("--out", default="evaluation", help="report folder (metrics.json, report.md, PNGs)")
    p.add_argument("--run", help="a training run folder: evaluate only its split (see --split)")
    p.add_argument("--split", default="val", choices=("val", "train", "test", "holdout"),
                   help="with --run: that run's val/train items; test: the items the dataset lists as test")
    p.add_argument("--window", type=int, default=20, help="the service's window W")
    p.add_argument("--min-frames", type=int, default=10, help="the service's scoring.min_frames")
    p.add_argument("--no-sbi", action="store_true", help="do not add self-blended copies of the real items")
    p.add_argument("--use-card", action="store_true", help="use the card's temperature and threshold (test data)")
    p.add_argument("--target-fpr", type=float, default=0.05, help="threshold = this false-positive rate on reals")
    p.add_argument("--write-card", metavar="PATH", help="save the checkpoint with the fitted temperature/threshold")
    p.add_argument("--half", action="store_true", help="with --write-card: store fp16 weights (half the size)")
    p.set_defaults(fn=cmd_evaluate)



