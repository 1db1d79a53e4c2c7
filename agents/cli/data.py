"""``hlmat data``: get the standard interactive-segmentation sets (``fetch``) and list their sources (``list``)."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat data`` with its ``fetch`` and ``list`` subcommands."""
    p = subparsers.add_parser(
        "data", help="download a standard interactive-segmentation set (fetch) or list the sources (list)",
        description="Downloads GrabCut, Berkeley, DAVIS, COCO-MVal, PascalVOC or SBD from its public source, checks "
                    "it (the published size and SHA-256 where the source publishes them; elsewhere the SHA-256 of "
                    "the first download, recorded beside the data), resumes a partial download, unpacks it where "
                    "its loader looks and prints the dataset spec that reads it.")
    sub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    f = sub.add_parser("fetch", help="download, check and unpack one set; print its dataset spec",
                       description="Download, check and unpack one set into --root; print its dataset spec.")
    f.add_argument("name", help="the set (see `hlmat data list`)")
    f.add_argument("--root", required=True, help="folder to put it in (created)")
    f.add_argument("--force", action="store_true", help="download and unpack again even if it is already there")
    f.add_argument("--keep-archive", action="store_true", help="keep the downloaded archive after unpacking")
    f.add_argument("--retries", type=int, default=2, help="automatic resumes of an interrupted download (default: 2)")
    f.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sub.add_parser("list", help="the sets, their sources, checks and licences",
                   description="The sets `hlmat data fetch` knows: URL, check, licence, spec kind.")
    p.set_defaults(data_parser=p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat data fetch`` or ``hlmat data list`` (help and exit code 2 without a subcommand)."""
    from hlmat_env.datasets.fetch import SOURCES, fetch

    if args.data_command is None:
        args.data_parser.print_help()
        return 2
    if args.data_command == "list":
        for s in SOURCES.values():
            check = "published size/SHA-256" if s.sha256 else "SHA-256 of the first download, recorded"
            print(f"{s.name}  ({s.kind}:)\n  url: {', '.join(s.urls)}\n  check: {check}\n  licence: {s.licence}\n"
                  f"  homepage: {s.homepage}" + (f"\n  note: {s.note}" if s.note else ""))
        return 0
    res = fetch(args.name, args.root, force=args.force, keep_archive=args.keep_archive,
                progress=not args.no_progress, retries=args.retries, say=print)
    print(f"spec: {res.spec}")
    return 0
