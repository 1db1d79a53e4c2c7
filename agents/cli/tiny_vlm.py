"""``hlmat tiny-vlm``: write a tiny randomly initialised vision-language model + processor folder."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat tiny-vlm`` and its flags."""
    p = subparsers.add_parser(
        "tiny-vlm", help="write a tiny random vision-language model folder (tests, users without weights)",
        description="Builds a small model (~170k parameters by default) offline from a config (byte-level tokenizer, small image "
                    "budget) and saves it with its processor; it loads like any local checkpoint.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--arch", choices=("qwen2-vl", "llava"), default="qwen2-vl", help="architecture (default: qwen2-vl)")
    p.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default: 0)")
    p.add_argument("--hidden", type=int, default=64, help="text hidden size; the vision tower is half as wide "
                                                          "(default: 64; 128 = ~1M parameters)")
    p.add_argument("--layers", type=int, default=2, help="text decoder layers (default: 2)")
    p.add_argument("--image-tokens", type=int, default=None,
                   help="image tokens per image: qwen2-vl a fixed budget of N 28x28 cells (48: 160x120 -> 224x168), "
                        "llava the nearest square grid of 14-px patches (64: a 112x112 input); default: qwen2-vl "
                        "24 for 160x120, llava 16")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat tiny-vlm`` with the parsed ``args``; returns the exit code."""
    from agents.mllm.tiny_vlm import TinySize, build_tiny_vlm

    try:
        size = TinySize(hidden=args.hidden, layers=args.layers, image_tokens=args.image_tokens)
    except ValueError as e:
        raise SystemExit(f"hlmat tiny-vlm: {e}") from None
    out = build_tiny_vlm(args.out, args.arch, seed=args.seed, size=size)
    print(f"wrote a tiny {args.arch} model to {out}")
    return 0
