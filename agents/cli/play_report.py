"""``hlmat play-report``: recorded human sessions beside the robot user and agents on the same samples."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat play-report`` and its flags."""
    p = subparsers.add_parser(
        "play-report", help="humans (hlmat play recordings) beside the robot user and agents: NoC, mIoU@k, "
                            "s/click, human vs robot-user clicks",
        description="Read the human episodes recorded by hlmat play, run the robot user (oracle) and the given "
                    "agents on the same samples, and print the benchmark's metrics side by side (seconds per "
                    "click included) with a comparison of each human click with the robot user's click for the "
                    "same state: distance, sign, share on an error pixel and inside the largest error region.")
    p.add_argument("--in", dest="recordings", required=True, help="folder of hlmat play recordings (or one file)")
    p.add_argument("--agent", default="oracle", help="comma-separated agent specs (default: oracle)")
    p.add_argument("--max-clicks", type=int, default=20, help="click budget of the metrics (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="the agents' base seed (default: 0)")
    p.add_argument("--out", default=None, help="write report.json and report.md here")
    return p


def run(args: argparse.Namespace) -> int:
    """Build the report and print it as Markdown."""
    from agents.play.report import play_report

    agents = [a.strip() for a in args.agent.split(",") if a.strip()]
    reports = play_report(args.recordings, agents, max_clicks=args.max_clicks, seed=args.seed, out=args.out)
    print("\n".join(r.markdown() for r in reports))
    return 0
