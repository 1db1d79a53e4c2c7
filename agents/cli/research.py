"""``hlmat research``: the research one-offs, kept apart from the main command list.

These change trained model folders in ways a user of the env does not need: ``average`` (a uniform weight
average of fine-tuned folders, a model soup), ``deepen`` (identity-initialised extra layers) and ``ppo-curve``
(the benchmark's mIoU@k of a PPO run's checkpoints against env steps). Each is an ordinary subcommand module
(``add_parser`` / ``run``) nested one level down: ``hlmat research average ...``.
"""
from __future__ import annotations

import argparse
import importlib
from typing import Any

# research subcommand -> module under agents.cli
RESEARCH_COMMANDS: dict[str, str] = {"average": "average", "deepen": "deepen", "ppo-curve": "ppo_curve"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat research`` and its nested subcommands."""
    p = subparsers.add_parser("research", help="research one-offs on trained model folders "
                                               "(average, deepen, ppo-curve)",
                              description=__doc__.split("\n\n")[1])
    sub = p.add_subparsers(dest="research_command", metavar="RESEARCH_COMMAND")
    for module in RESEARCH_COMMANDS.values():
        importlib.import_module(f"agents.cli.{module}").add_parser(sub)
    p.set_defaults(research_parser=p)
    return p


def run(args: argparse.Namespace) -> int:
    """Dispatch to the nested subcommand (help and exit code 2 when none is given)."""
    if args.research_command is None:
        args.research_parser.print_help()
        return 2
    return int(importlib.import_module(f"agents.cli.{RESEARCH_COMMANDS[args.research_command]}").run(args) or 0)
