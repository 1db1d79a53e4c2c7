"""``hlmat generate --format minari``: the finished JSONL shards of a generation, as one Minari dataset.

The generation itself always writes JSONL shards (:mod:`agents.tools.generate`): they carry the resume
guarantees (a kill loses no finished episode, a resume writes none twice). At the end of every run, resumed or
not, the Minari dataset is **rebuilt from all the shards** by :func:`hlmat_env.exports_minari.export_minari`
(each episode replayed in the env, masks lossless):

- episodes in a fixed order, by sample index and then by the position of the start state in ``--start``, so
  the dataset does not depend on the workers, the backend, or where a run was killed and resumed;
- written under ``OUT/minari.tmp`` and swapped into ``OUT/minari`` (a Minari datasets root) by renames, so
  ``OUT/minari`` always holds a whole dataset (or none yet), never a torn one; a kill during the build leaves
  the shards complete, and ``--resume`` builds it again;
- ``OUT/minari.json`` stamps the built dataset (its id, storage and episode ids); a resume that adds nothing
  and asks for the same dataset leaves it as it is.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from hlmat_env.trajectories import Trajectory, read_jsonl

MINARI_ROOT = "minari"
STAMP_FILE = "minari.json"


def shard_trajectories(out: Path, starts: tuple[str, ...]) -> list[Trajectory]:
    """The trajectories of the final shards ``out/part-*.jsonl``, by sample index, then start state.

    Args:
        out: the generation folder.
        starts: the run's start states; their order orders the episodes of one sample.

    Returns:
        The trajectories in dataset order.
    """
    trajs = [t for shard in sorted(out.glob("part-*.jsonl")) for t in read_jsonl(shard)]
    order = {s: k for k, s in enumerate(starts)}
    return sorted(trajs, key=lambda t: (t.index, order.get(t.start, len(order)), t.episode_id))


def _stamp(dataset_id: str, data_format: str, trajs: list[Trajectory], settings: dict[str, Any]) -> dict:
    ids = "\n".join(t.episode_id for t in trajs).encode()
    return {"dataset_id": dataset_id, "data_format": data_format, "episodes": len(trajs),
            "episode_ids_sha256": hashlib.sha256(ids).hexdigest(), "settings": settings}


def build_minari(out: Path, cfg: Any) -> int:
    """(Re)build ``out/minari/<cfg.dataset_id>`` from the shards of ``out``; returns the episodes it holds.

    Args:
        out: the generation folder (its lock held by the caller).
        cfg: the run's :class:`agents.tools.generate.GenerateConfig` (``dataset_id``, ``minari_format``,
            ``starts``, ``segmenter``, ``max_clicks``, ``env_kwargs``).

    Returns:
        The number of episodes in the dataset (0, and no dataset, when no episode was recorded).

    Raises:
        TrajectoryError: an episode cannot be replayed in the env (see
            :func:`hlmat_env.exports_minari.replay`).
        DependencyNotInstalled: ``minari`` (the ``minari`` extra) is missing.
    """
    from hlmat_env.exports_minari import export_minari

    root, tmp, old = out / MINARI_ROOT, out / f"{MINARI_ROOT}.tmp", out / f"{MINARI_ROOT}.old"
    for stale in (tmp, old):  # left by a kill during an earlier build or swap
        shutil.rmtree(stale, ignore_errors=True)
    trajs = shard_trajectories(out, cfg.starts)
    stamp_path = out / STAMP_FILE
    stamp = json.loads(json.dumps(_stamp(cfg.dataset_id, cfg.minari_format, trajs, cfg.settings())))
    if root.is_dir() and stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        return len(trajs)  # built from these very shards already
    stamp_path.unlink(missing_ok=True)
    if not trajs:
        return 0
    export_minari(trajs, tmp, dataset_id=cfg.dataset_id, segmenter=cfg.segmenter, max_clicks=cfg.max_clicks,
                  data_format=cfg.minari_format, env_kwargs=cfg.env_kwargs,
                  description=f"HLMAT robot-user demonstrations on {cfg.dataset} (hlmat generate --format minari)")
    if root.exists():
        os.replace(root, old)
    os.replace(tmp, root)
    shutil.rmtree(old, ignore_errors=True)
    part = stamp_path.with_name(STAMP_FILE + ".tmp")
    part.write_text(json.dumps(stamp, indent=2) + "\n")
    os.replace(part, stamp_path)
    return len(trajs)


__all__ = ["MINARI_ROOT", "STAMP_FILE", "build_minari", "shard_trajectories"]
