"""The ``hlmat`` command: a thin dispatcher. Each subcommand lives in its own module of this package
exposing ``add_parser(subparsers)`` (which registers the subcommand and its flags) and ``run(args) -> int``.
Modules are imported lazily so that ``hlmat --help`` stays fast and optional extras load only when used.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from hlmat_env.errors import HLMATError

# subcommand -> module under agents.cli
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "generate": "generate",
    "export": "export",
    "benchmark": "benchmark",
    "results": "results",
    "train-ppo": "train_ppo",
    "train-trunk": "train_trunk",
    "bench-sam": "bench_sam",
    "bench-env": "bench_env",
    "bench-segmenters": "bench_segmenters",
    "train-prm": "train_prm",
    "eval-prm": "eval_prm",
    "score-masks": "score_masks",
    "star": "star",
    "compare": "compare",
    "tiny-vlm": "tiny_vlm",
    "sft": "sft",
    "grpo": "grpo",  # GRPO on env episodes for an MLLM policy (TRL)
    "play": "play",  # annotate in the browser (human trajectories), replay any trajectory file
    "play-report": "play_report",  # humans beside the robot user and agents
    "data": "data",  # fetch / list the standard interactive-segmentation sets
    "research": "research",  # the research one-offs (average, deepen), one level down
}


def build_parser() -> argparse.ArgumentParser:
    """The ``hlmat`` argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="hlmat", description="Human-Like Mask Annotation Task tools")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        importlib.import_module(f"agents.cli.{module}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``hlmat`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code (2 for a usage or input
    error, printed as one line naming what was wrong)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(f"agents.cli.{COMMANDS[args.command]}")
    try:
        return int(module.run(args) or 0)
    except HLMATError as e:  # a clear one-line message for what the user can fix (bad input, stale files)
        print(f"hlmat {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
