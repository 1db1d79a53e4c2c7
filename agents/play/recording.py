"""Crash-safe recording of human episodes: one JSONL file per session, one finished episode per line.

A line is the record :func:`hlmat_env.trajectories.dumps` writes for ``hlmat generate`` (so ``hlmat export``,
BC, SFT, StaR+ and Minari read human episodes as they read the robot user's), plus human fields that every
reader ignores:

- ``annotator``: ``"human"``; ``session_id``: the server session that recorded it;
- ``finished``: True when the person pressed *finish*, False when the click budget ended the episode;
- ``started_at`` / ``finished_at``: Unix times (seconds) of the sample shown and of the end;
- ``clicks[].t``: seconds from the sample shown to the click reaching the server; ``clicks[].client_t``:
  the same interval measured by the page (null when the page did not send it).

Each line is written with one ``os.write`` on an ``O_APPEND`` descriptor, then ``fsync``: a killed server loses
at most the episode in progress. :func:`repair_torn_tails` (run when a server starts on the folder) cuts a
partial last line left by a kill in the middle of a write.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from hlmat_env.trajectories import Trajectory, TrajectoryError

HUMAN_GLOB = "human-*.jsonl"
"""File names of the human sessions in a recording folder (``human-SESSION.jsonl``)."""


class EpisodeWriter:
    """Appends finished episodes of one session to ``OUT/human-SESSION.jsonl`` (created on the first one).

    Args:
        out: the recording folder (created).
        session_id: the session's id (letters, digits, ``-`` and ``_``).
    """

    def __init__(self, out: str | Path, session_id: str):
        if not session_id or not all(ch.isalnum() or ch in "-_" for ch in session_id):
            raise ValueError(f"session_id must be letters, digits, '-' or '_', got {session_id!r}")
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / f"human-{session_id}.jsonl"
        self.count = 0

    def append(self, record: dict[str, Any]) -> None:
        """Write one episode record as a line, durably (one write, then fsync) before returning."""
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            while written < len(data):  # a short write (rare on regular files): finish the line
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
        self.count += 1


def repair_torn_tails(out: str | Path) -> int:
    """Cut a partial last line (no final newline: a kill in the middle of a write) from every human file of
    ``out``. Returns the number of files repaired."""
    repaired = 0
    for path in sorted(Path(out).glob(HUMAN_GLOB)):
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
                f.flush()
                os.fsync(f.fileno())
            repaired += 1
    return repaired


def iter_human_records(path: str | Path) -> Iterator[tuple[dict[str, Any], str]]:
    """Raw JSON records (with their human fields) of a JSONL file or of every ``*.jsonl`` of a folder, each
    with ``FILE:LINE`` for messages. A line that is not JSON raises :class:`TrajectoryError` naming it."""
    p = Path(path)
    files = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    if not p.exists():
        raise TrajectoryError(f"trajectory file or folder not found: {p}")
    for f in files:
        with open(f, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line), f"{f}:{n}"
                except json.JSONDecodeError as e:
                    raise TrajectoryError(f"{f}:{n}: not valid JSON ({e})") from None


def read_human(path: str | Path) -> list[tuple[Trajectory, dict[str, Any]]]:
    """The human episodes (``annotator == "human"``) of a file or folder: each as its
    :class:`~hlmat_env.trajectories.Trajectory` and its raw record (timestamps, session id)."""
    return [(Trajectory.from_json(d, where), d) for d, where in iter_human_records(path)
            if isinstance(d, dict) and d.get("annotator") == "human"]


def annotated_sample_ids(out: str | Path) -> set[str]:
    """Sample ids with at least one human episode recorded in ``out`` (a missing folder: none)."""
    out = Path(out)
    if not out.is_dir():
        return set()
    ids = set()
    for path in sorted(out.glob(HUMAN_GLOB)):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                ids.add(str(json.loads(line)["sample_id"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return ids
