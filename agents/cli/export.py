"""``hlmat export``: turn generated trajectories into fine-tuning data (LLaMA-Factory, TRL) or SegAgent JSON."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat export`` and its flags."""
    p = subparsers.add_parser(
        "export", help="export trajectories for fine-tuning (llamafactory, trl) or as SegAgent JSON",
        description="One sample per click step: the image with the mask before the click as a green overlay "
                    "(PNG), SegAgent's instruction plus the description, and the click as text.")
    p.add_argument("--in", dest="inp", required=True,
                   help="folder of *.jsonl shards (hlmat generate --out), a .jsonl file or a SegAgent .json file")
    p.add_argument("--format", required=True, choices=("llamafactory", "trl", "segagent"), help="output format")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--coords", default="segagent-qwen",
                   help="coordinate codec of the answer text: segagent-qwen, qwen2, qwen3, qwen25, llava "
                        "(default: segagent-qwen)")
    p.add_argument("--with-iou", action="store_true",
                   help="prefix 'Current IOU: NN, ' (IoU of the mask before the click, 0-100; the PRM variant)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat export`` with the parsed ``args``; returns the exit code."""
    from hlmat_env.exports import export
    from hlmat_env.trajectories import iter_trajectories

    n = export(iter_trajectories(args.inp), args.format, args.out, coords=args.coords, with_iou=args.with_iou)
    unit = "trajectories" if args.format == "segagent" else "click-step samples"
    print(f"wrote {n} {unit} to {args.out} ({args.format})")
    return 0
