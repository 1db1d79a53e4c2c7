"""``hlmat research ppo-curve``: mIoU@k of PPO checkpoints against env steps (learning curves as the benchmark
sees them)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat research ppo-curve`` and its flags."""
    p = subparsers.add_parser(
        "ppo-curve", help="benchmark a PPO run's start model and checkpoints; plot mIoU@k against env steps",
        description="Benchmarks --start (step 0, when given) and every checkpoints/ppo_<steps>_steps.zip of each run on the "
                    "same samples and seed, writes OUT.json (the rows) and OUT.png (one panel per k).")
    p.add_argument("runs", nargs="+", metavar="LABEL=DIR", help="training folders (hlmat train-ppo --out), labelled")
    p.add_argument("--start", default=None,
                   help="the model the runs started from (their --init-from), plotted at step 0; omit for runs "
                        "from scratch")
    p.add_argument("--dataset", default="synthetic:val", help="dataset spec (default: synthetic:val)")
    p.add_argument("--limit", type=int, default=50, help="first N samples (default: 50)")
    p.add_argument("--max-clicks", type=int, default=10, help="click budget (default: 10)")
    p.add_argument("--ks", default="1,3,5,10", help="comma-separated k of the panels (default: 1,3,5,10)")
    p.add_argument("--out", required=True, help="output path without suffix (OUT.json, OUT.png)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat research ppo-curve`` with the parsed ``args``; returns the exit code."""
    from agents.ppo.miou_curve import checkpoint_curve, plot_curve
    from hlmat_env.errors import InvalidOption

    runs = {}
    for item in args.runs:
        label, sep, folder = item.partition("=")
        if not sep or not Path(folder).is_dir():
            raise InvalidOption(f"ppo-curve: expected LABEL=DIR with an existing folder, got {item!r}")
        runs[label] = folder
    out = Path(args.out)
    curves = checkpoint_curve(runs, args.start, args.dataset, limit=args.limit, max_clicks=args.max_clicks,
                              cache=out.with_suffix(".cache.json"))
    out.with_suffix(".json").write_text(json.dumps(curves, indent=1) + "\n")
    png = plot_curve(curves, out.with_suffix(".png"), [int(k) for k in args.ks.split(",")],
                     title=f"{args.dataset}, first {args.limit}, {args.max_clicks} clicks")
    for label, rows in curves.items():
        for r in rows:
            print(label, r["steps"], " ".join(f"mIoU@{k}={100 * r[f'miou@{k}']:.1f}" for k in args.ks.split(",")
                                               if f"miou@{k}" in r))
    print(f"wrote {out.with_suffix('.json')} and {png}")
    return 0
