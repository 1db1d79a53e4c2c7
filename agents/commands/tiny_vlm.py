"""``hlmat tiny-vlm``: write a tiny randomly initialised vision-language model + processor folder."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "tiny-vlm", help="write a tiny random vision-language model folder (tests, users without weights)",
        description="Builds a ~170k-parameter model offline from a config (byte-level tokenizer, small image "
                    "budget) and saves it with its processor; it loads like any local checkpoint.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--arch", choices=("qwen2-vl", "llava"), default="qwen2-vl", help="architecture (default: qwen2-vl)")
    p.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default: 0)")
    return p


def run(args: argparse.Namespace) -> int:
    from agents.tiny_vlm import build_tiny_vlm

    out = build_tiny_vlm(args.out, args.arch, seed=args.seed)
    print(f"wrote a tiny {args.arch} model to {out}")
    return 0
