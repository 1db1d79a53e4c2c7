"""``hlmat generate``: record robot-user trajectories over a dataset into JSONL shards (resumable, parallel)."""
from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat generate`` and its flags."""
    p = subparsers.add_parser(
        "generate", help="record expert click trajectories over a dataset (JSONL shards, resumable)",
        description="Record the robot user's trajectories (SegAgent's rules) over a dataset into DIR/part-*.jsonl; "
                    "bad samples go to DIR/errors.jsonl. Kill it at any time and continue with --resume. "
                    "--format minari then rebuilds the Minari dataset DIR/minari/DATASET_ID from all shards at "
                    "the end of each run (load with MINARI_DATASETS_PATH=DIR/minari; needs hlmat[minari]).")
    p.add_argument("--dataset", required=True,
                   help="dataset spec: synthetic[:val], folder:PATH, coco:ANN[?images=DIR], "
                        "refcoco:ROOT[,DATASET[,SPLITBY[,SPLIT]]], segagent:FILE[?images=DIR]")
    p.add_argument("--segmenter", default="default", help="segmenter name (default: default)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--limit", type=int, default=None, help="only the first N samples")
    p.add_argument("--workers", type=int, default=1, help="worker processes / Ray CPUs (default: 1)")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="local pool or Ray (default: local)")
    p.add_argument("--ray-address", default=None, help="address of a running Ray cluster (default: start a local one)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished episodes")
    p.add_argument("--seed", type=int, default=0, help="base seed; episode seeds derive from (seed, index, start)")
    p.add_argument("--start", default="empty",
                   help="comma-separated start states: empty, box, degraded, clicks (default: empty)")
    p.add_argument("--tau-stop", type=float, default=0.98, help="stop once IoU reaches this (default: 0.98)")
    p.add_argument("--max-clicks", type=int, default=20, help="at most this many kept clicks (default: 20)")
    p.add_argument("--shard-size", type=int, default=100, help="episodes per shard file (default: 100)")
    p.add_argument("--segmenter-kwargs", default=None, metavar="JSON", help="segmenter keyword arguments as JSON")
    p.add_argument("--format", choices=("jsonl", "minari"), default="jsonl",
                   help="jsonl: the shards; minari: the shards and a Minari dataset built from them (default: jsonl)")
    p.add_argument("--dataset-id", default="hlmat/demonstrations-v0",
                   help="minari: the dataset id, (namespace/)(env_name/)name(-vN) (default: hlmat/demonstrations-v0)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat generate`` with the parsed ``args``; returns the exit code."""
    from agents.tools.generate import GenerateConfig, generate

    env_kwargs = {}
    if args.segmenter_kwargs:
        try:
            env_kwargs["segmenter_kwargs"] = json.loads(args.segmenter_kwargs)
        except json.JSONDecodeError as e:
            raise SystemExit(f"--segmenter-kwargs is not valid JSON ({e}): {args.segmenter_kwargs!r}") from None
    starts = tuple(s.strip() for s in args.start.split(",") if s.strip())
    try:
        cfg = GenerateConfig(dataset=args.dataset, out=args.out, segmenter=args.segmenter, limit=args.limit,
                             starts=starts, seed=args.seed, tau_stop=args.tau_stop, max_clicks=args.max_clicks,
                             workers=args.workers, backend=args.backend, shard_size=args.shard_size,
                             resume=args.resume, ray_address=args.ray_address, env_kwargs=env_kwargs,
                             progress=not args.no_progress, format=args.format, dataset_id=args.dataset_id)
    except ValueError as e:
        raise SystemExit(f"hlmat generate: {e}") from None
    r = generate(cfg)
    print(f"generated {r.written} episodes in {r.seconds:.1f} s ({r.episodes_per_s:.2f} episodes/s, "
          f"backend {args.backend}, {args.workers} worker(s); {r.mean_kept_clicks:.2f} kept clicks and final IoU "
          f"{r.mean_final_iou:.3f} per episode); {r.errors} error(s) logged to "
          f"{args.out}/errors.jsonl; {r.already_done} already done")
    if r.minari_episodes is not None:
        print(f"minari: {r.minari_episodes} episodes in {args.out}/minari/{args.dataset_id} "
              f"({r.minari_seconds:.1f} s; load with MINARI_DATASETS_PATH={args.out}/minari and "
              f"minari.load_dataset({args.dataset_id!r}))")
    return 0
