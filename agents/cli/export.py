"""``hlmat export``: turn generated trajectories into fine-tuning data (LLaMA-Factory, TRL), SegAgent JSON or a
Minari dataset."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat export`` and its flags."""
    p = subparsers.add_parser(
        "export", help="export trajectories for fine-tuning (llamafactory, trl), as SegAgent JSON or as a Minari "
                       "dataset",
        description="llamafactory, trl: one sample per click step: the image with the mask before the click as a "
                    "green overlay (PNG), SegAgent's instruction plus the description, and the click as text. "
                    "minari: each trajectory replayed in the env as a Minari dataset OUT/DATASET_ID (lossless; "
                    "load with MINARI_DATASETS_PATH=OUT minari.load_dataset(DATASET_ID); needs hlmat[minari]).")
    p.add_argument("--in", dest="inp", required=True,
                   help="folder of *.jsonl shards (hlmat generate --out), a .jsonl file or a SegAgent .json file")
    p.add_argument("--format", required=True, choices=("llamafactory", "trl", "segagent", "minari"),
                   help="output format")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--coords", default="segagent-qwen",
                   help="coordinate codec of the answer text: segagent-qwen, qwen2, qwen3, qwen25, llava "
                        "(default: segagent-qwen)")
    p.add_argument("--with-iou", action="store_true",
                   help="prefix 'Current IOU: NN, ' (IoU of the mask before the click, 0-100; the PRM variant)")
    p.add_argument("--dataset-id", default="hlmat/demonstrations-v0",
                   help="minari: the dataset id, (namespace/)(env_name/)name(-vN) (default: hlmat/demonstrations-v0)")
    p.add_argument("--max-clicks", type=int, default=20, help="minari: the replay env's click budget (default: 20)")
    p.add_argument("--coord-bins", type=int, default=1000,
                   help="minari: the replay env's action bins, at least the largest image side (default: 1000)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat export`` with the parsed ``args``; returns the exit code."""
    from hlmat_env.exports import export
    from hlmat_env.trajectories import iter_trajectories

    if args.format == "minari":
        from hlmat_env.exports_minari import export_minari

        n = export_minari(iter_trajectories(args.inp), args.out, dataset_id=args.dataset_id,
                          max_clicks=args.max_clicks, coord_bins=args.coord_bins)
        print(f"wrote {n} episodes to {args.out}/{args.dataset_id} (minari; load with "
              f"MINARI_DATASETS_PATH={args.out} and minari.load_dataset({args.dataset_id!r}))")
        return 0

    n = export(iter_trajectories(args.inp), args.format, args.out, coords=args.coords, with_iou=args.with_iou)
    unit = "trajectories" if args.format == "segagent" else "click-step samples"
    print(f"wrote {n} {unit} to {args.out} ({args.format})")
    return 0
