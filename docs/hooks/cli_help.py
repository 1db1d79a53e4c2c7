"""MkDocs hook: paste the ``--help`` text of an ``hlmat`` subcommand into a page, so the flags in the docs are
always the code's.

A line ``<!-- hlmat-help: benchmark -->`` (or ``<!-- hlmat-help: research average -->`` for a nested
subcommand) becomes a fenced block with that subcommand's help, formatted 100 columns wide. An unknown
subcommand is logged as a warning, which fails ``mkdocs build --strict``.
"""
from __future__ import annotations

import argparse
import logging
import os
import re

log = logging.getLogger("mkdocs.hooks.cli_help")
MARKER = re.compile(r"^<!-- hlmat-help: ([a-z0-9 _-]+) -->$", re.MULTILINE)
_PARSER: argparse.ArgumentParser | None = None


def _parser() -> argparse.ArgumentParser:
    global _PARSER
    if _PARSER is None:
        from agents.cli import build_parser

        _PARSER = build_parser()
    return _PARSER


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]
    return None


def help_text(path: str) -> str | None:
    """The help of ``hlmat PATH`` (``PATH`` = space-separated subcommand names), or None if there is none."""
    parser: argparse.ArgumentParser | None = _parser()
    for name in path.split():
        parser = _subparser(parser, name) if parser is not None else None
    if parser is None:
        return None
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        return parser.format_help().rstrip()
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    def replace(m: re.Match) -> str:
        text = help_text(m.group(1).strip())
        if text is None:
            log.warning("%s: no hlmat subcommand %r", page.file.src_path, m.group(1))
            return m.group(0)
        return f"```text\n{text}\n```"

    return MARKER.sub(replace, markdown)


def on_post_page(output: str, page, **kwargs) -> str:
    """Warn when the commands page misses a subcommand (so a new command cannot go undocumented)."""
    if page.file.src_path != "commands.md":
        return output
    for action in _parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name in action.choices:
                if f'id="{name}"' not in output:
                    log.warning("commands.md has no section for `hlmat %s`", name)
    return output
