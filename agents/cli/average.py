"""``hlmat research average``: uniform weight average of fine-tuned model folders (a model soup)."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat research average`` and its flags."""
    p = subparsers.add_parser(
        "average", help="average the weights of fine-tuned model folders of one architecture (a model soup)",
        description="Writes the uniform mean of the models' weights, with the first model's processor and the "
                    "shared codec, to a folder that mllm:OUT loads (e.g. the ends of successive hlmat sft runs).")
    p.add_argument("models", nargs="+", help="model folders (at least two; same architecture)")
    p.add_argument("--out", required=True, help="output folder")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat research average`` with the parsed ``args``; returns the exit code."""
    from agents.research.model_average import average_models

    out = average_models(args.models, args.out)
    print(f"averaged {len(args.models)} models into {out}")
    return 0
