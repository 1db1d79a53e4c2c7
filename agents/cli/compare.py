"""``hlmat compare``: each benchmark run against a baseline run, with paired bootstrap confidence intervals."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat compare`` and its flags."""
    p = subparsers.add_parser(
        "compare", help="paired bootstrap CI of the per-sample difference between benchmark runs",
        description="Compare RUN (benchmark folders or per_sample.csv files) against BASE sample by sample: "
                    "mean of each, mean difference and its percentile bootstrap interval. Prints a markdown "
                    "table. AGENT labels pick one agent of a multi-agent run: PATH#AGENT.")
    p.add_argument("base", help="baseline run (folder or per_sample.csv), optionally PATH#AGENT")
    p.add_argument("runs", nargs="+", help="runs to compare against the baseline")
    p.add_argument("--column", default="final_iou",
                   help="per-sample column (default: final_iou, the IoU at the click budget)")
    p.add_argument("--n", type=int, default=10_000, help="bootstrap resamples (default: 10000)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default: 0.95)")
    p.add_argument("--seed", type=int, default=0, help="resampling seed (default: 0)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat compare`` with the parsed ``args``; returns the exit code."""
    from agents.tools.stats import compare_runs

    def split(spec: str) -> tuple[str, str | None]:
        path, _, agent = spec.partition("#")
        return path, agent or None

    base, base_agent = split(args.base)
    scale = 100 if "iou" in args.column else 1
    pct = f"{100 * args.level:g}%"
    print(f"| run | n | {args.column} base | {args.column} run | diff | {pct} CI |")
    print("|---|---|---|---|---|---|")
    for spec in args.runs:
        path, agent = split(spec)
        c = compare_runs(base, path, agent_a=base_agent, agent_b=agent, column=args.column, n=args.n,
                         seed=args.seed, level=args.level)
        print(f"| {spec} | {c.n} | {scale * c.mean_a:.2f} | {scale * c.mean_b:.2f} | {scale * c.diff:+.2f} | "
              f"[{scale * c.lo:+.2f}, {scale * c.hi:+.2f}]{' *' if c.significant else ''} |")
    return 0
