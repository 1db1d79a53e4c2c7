"""``hlmat results``: run the results suite (the numbers the README and docs quote) and write its files."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat results`` and its flags."""
    from agents.tools.results import SECTIONS

    p = subparsers.add_parser(
        "results", help="run the results suite; write docs/results/ and the README's results tables",
        description="Runs the benchmark suite behind every number in the README and the docs: segmenters on real "
                    "photos, agents, demonstration throughput, the PRM and its uses. Writes docs/results/<section>.md "
                    "(+ .json, plots) and rewrites the README's results blocks. --fast runs it on a few samples.")
    p.add_argument("--fast", action="store_true", help="a few samples per section (CI); does not touch the README")
    p.add_argument("--out", default=None, help="output folder (default: docs/results; with --fast: build/results-fast)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--data", default="../shared/data", help="folder of the real sets grabcut/, coco_mval/")
    p.add_argument("--prm", default=None, help="PRM checkpoint for the prm section, or 'default' (the shipped PRM) "
                                              "(default: train the small recipe)")
    p.add_argument("--work", default="build/results-work", help="work files: trained PRM, demonstrations")
    p.add_argument("--workers", type=int, default=2, help="processes for demonstration generation (default: 2)")
    p.add_argument("--readme", default=None,
                   help="README to update (default: README.md; with --fast: none unless given)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def run(args: argparse.Namespace) -> int:
    """Run the suite; print where the files went."""
    from agents.tools.results import run_results

    out = args.out or ("build/results-fast" if args.fast else "docs/results")
    readme = args.readme if args.readme is not None else (None if args.fast else "README.md")
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    quoted = (["--fast"] if args.fast else []) + (["--data", args.data] if args.data != "../shared/data" else []) \
        + (["--prm", args.prm] if args.prm else [])  # what reproduces the numbers (each section is rerun alone)
    done = run_results(out, fast=args.fast, data=args.data, sections=sections, prm=args.prm, work=args.work,
                       workers=args.workers, readme=readme, progress=not args.no_progress, argv=quoted)
    for name, s in done.items():
        print(f"{name}: {s.seconds:.0f} s\n{s.readme if s.readme is not None else s.page}")
    print(f"wrote {out}/" + (f" and the results blocks of {readme}" if readme else ""))
    return 0
