"""``hlmat bench-sam``: seconds per click episode, plain SamPredictor loop vs hlmat's cached SAM segmenter
(``--segmenter sam2``: plain SAM2ImagePredictor loop vs hlmat's cached SAM 2 segmenter)."""
from __future__ import annotations

import argparse
import json
from typing import Any

# the names of hlmat_env.segmenters.sam2.SAM2_CONFIGS, listed here so that --help imports no segmenter code
SAM2_NAMES = [f"{v}_hiera_{s}" for v in ("sam2.1", "sam2") for s in ("tiny", "small", "base_plus", "large")]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat bench-sam`` and its flags."""
    p = subparsers.add_parser(
        "bench-sam", help="time SAM episodes: plain SamPredictor loop vs hlmat's SAM segmenter",
        description="Runs robot-user click episodes on one image with a randomly initialised SAM "
                    "(same compute as real weights) and prints seconds per episode for a plain SamPredictor "
                    "loop (set_image every episode) and for hlmat's SamSegmenter (embedding cached); "
                    "with --segmenter sam2, the same for SAM 2 (SAM2ImagePredictor vs Sam2Segmenter).")
    p.add_argument("--segmenter", default="sam", choices=["sam", "sam2"],
                   help="which model to time: SAM (--model-type) or SAM 2 (--sam2-config) (default: sam)")
    p.add_argument("--model-type", default="vit_b", choices=["vit_b", "vit_l", "vit_h"],
                   help="SAM architecture (default: vit_b)")
    p.add_argument("--sam2-config", default="sam2.1_hiera_tiny", choices=SAM2_NAMES, metavar="NAME",
                   help="SAM 2 architecture, with --segmenter sam2: "
                        "sam2.1_hiera_{tiny,small,base_plus,large} or sam2_hiera_{...} for SAM 2.0 "
                        "(default: sam2.1_hiera_tiny)")
    p.add_argument("--episodes", default="1,5", help="comma-separated episode counts (default: 1,5)")
    p.add_argument("--clicks", type=int, default=10, help="clicks per episode (default: 10)")
    p.add_argument("--dataset", default=None,
                   help="dataset spec for the image (default: GrabCut next to the repo, else synthetic:val)")
    p.add_argument("--index", type=int, default=0, help="sample index in the dataset (default: 0)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random weights and candidates (default: 0)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the raw numbers as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat bench-sam`` with the parsed ``args``; returns the exit code."""
    import torch

    from agents.tools.sam_speed import bench_sam, bench_sam2, format_report

    try:
        episodes = sorted({int(e) for e in args.episodes.split(",") if e.strip()})
    except ValueError:
        raise SystemExit(f"--episodes must be comma-separated integers, got {args.episodes!r}") from None
    if not episodes or episodes[0] < 1 or args.clicks < 1:
        raise SystemExit(f"--episodes and --clicks must be >= 1, got {args.episodes!r} and {args.clicks}")
    torch.set_num_threads(args.threads)
    if args.segmenter == "sam2":
        result = bench_sam2(args.sam2_config, episodes, args.clicks, args.dataset, args.index, args.device,
                            args.seed)
    else:
        result = bench_sam(args.model_type, episodes, args.clicks, args.dataset, args.index, args.device,
                           args.seed)
    print(format_report(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0
