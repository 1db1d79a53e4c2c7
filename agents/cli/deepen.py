"""``hlmat research deepen``: add identity-initialised layers to a model folder (it computes the same function until trained)."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat research deepen`` and its flags."""
    p = subparsers.add_parser(
        "deepen", help="add identity-initialised text/vision layers to a VLM folder (llava, qwen2-vl)",
        description="Appends copies of the last text (and vision) layer with zeroed output projections, so the "
                    "deeper model starts where the source model is; writes it with the processor and codec to a "
                    "folder that hlmat sft --model and mllm:OUT load.")
    p.add_argument("model", help="model folder to deepen")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--text-layers", type=int, default=2, help="text decoder layers to add (default: 2)")
    p.add_argument("--vision-layers", type=int, default=0, help="vision layers to add (default: 0)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat research deepen`` with the parsed ``args``; returns the exit code."""
    from agents.research.model_deepen import deepen_folder

    out = deepen_folder(args.model, args.out, args.text_layers, args.vision_layers)
    print(f"deepened {args.model} by {args.text_layers} text and {args.vision_layers} vision layers into {out}")
    return 0
