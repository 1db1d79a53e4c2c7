"""Replays of recorded trajectories (robot user, agent or human): in the env, and frame by frame for the page.

:func:`replay_in_env` steps a record's clicks through an env again and returns the IoUs the env gives; for a
record made with the same dataset and segmenter they equal the recorded ones (the tests check this for human
recordings). :class:`ReplaySource` serves ``hlmat play --replay FILE``: each step's frame is the image with
the *recorded* mask and clicks drawn as the env renders them, with the recorded IoU curve.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agents.play.recording import iter_human_records
from agents.play.session import png_data_url
from hlmat_env.actions import Click
from hlmat_env.errors import DatasetError, HLMATError
from hlmat_env.render import render_state
from hlmat_env.trajectories import Trajectory, iter_trajectories

MAX_EPISODES = 100_000
"""Most episodes one replay server loads."""


def reset_options(traj: Trajectory) -> dict[str, Any]:
    """The env ``reset`` options that rebuild ``traj``'s start: its index with ``empty``/``box``, or its recorded
    start mask (``start="mask"``) for the other start states."""
    if traj.start in ("empty", "box"):
        return {"index": int(traj.index), "start": traj.start}
    return {"index": int(traj.index), "initial_mask": traj.mask_before(0)}


def replay_in_env(env: Any, traj: Trajectory) -> list[float]:
    """Step ``traj``'s clicks through ``env`` (an ``HLMATEnv``, wrapped or not, on the record's dataset) and
    return the IoU after each click.

    Args:
        env: the env; its budget must allow ``len(traj.clicks)`` clicks.
        traj: the trajectory (its ``index`` names the sample).

    Returns:
        One float per click, the env's ``info["iou"]``.
    """
    env.reset(seed=traj.seed, options=reset_options(traj))
    u = env.unwrapped
    return [float(u.click(Click(s.x, s.y, s.positive))[4]["iou"]) for s in traj.clicks]


def load_records(path: str | Path) -> list[tuple[Trajectory, dict[str, Any]]]:
    """Trajectories of a JSONL file, a folder of them or a SegAgent JSON file, each with its raw record
    (``{}`` for SegAgent JSON)."""
    p = Path(path)
    if p.suffix == ".json":
        return [(t, {}) for t in iter_trajectories(p)]
    out = [(Trajectory.from_json(d, where), d) for d, where in iter_human_records(p)
           if isinstance(d, dict) and "clicks" in d]  # errors.jsonl of a generation run holds no episode
    if not out:
        raise HLMATError(f"no trajectory in {p}")
    return out[:MAX_EPISODES]


class ReplaySource:
    """The episodes of one trajectory file, served frame by frame (``hlmat play --replay FILE``).

    Images are reloaded from each record's ``dataset`` spec and ``index`` (``dataset`` overrides the spec, e.g.
    for SegAgent files that have none).

    Args:
        path: a JSONL file, a folder of them or a SegAgent JSON file.
        dataset: a dataset spec for records without one (or to override theirs).
    """

    def __init__(self, path: str | Path, dataset: str | None = None):
        self.records = load_records(path)
        self.dataset = dataset
        self._datasets: dict[str, Any] = {}

    def episodes(self) -> list[dict[str, Any]]:
        """One summary per episode: ``episode``, ``episode_id``, ``sample_id``, ``annotator``, ``clicks``,
        ``final_iou``."""
        return [{"episode": i, "episode_id": t.episode_id, "sample_id": t.sample_id,
                 "annotator": d.get("annotator", "robot/agent"), "clicks": len(t.clicks),
                 "final_iou": t.clicks[-1].iou if t.clicks else t.start_iou}
                for i, (t, d) in enumerate(self.records)]

    def frame(self, episode: int, step: int) -> dict[str, Any]:
        """Episode ``episode`` after ``step`` clicks: the frame (PNG data URL), the click placed at that step,
        the IoU curve (start IoU first) and the caption.

        Raises:
            UnknownName: ``episode`` or ``step`` out of range.
        """
        from hlmat_env.errors import UnknownName

        if not 0 <= episode < len(self.records):
            n = len(self.records)
            raise UnknownName(f"no episode {episode}: the file holds {n} (0..{n - 1})")
        traj, raw = self.records[episode]
        if not 0 <= step <= len(traj.clicks):
            k = len(traj.clicks)
            raise UnknownName(f"episode {episode} has {k} clicks: step must be in [0, {k}]")
        image = self._image(traj)
        mask = traj.mask_before(step)
        clicks = [s.click for s in traj.clicks[:step]]
        times = [c.get("t") for c in raw.get("clicks", [])] if raw else []
        last = None
        if step:
            c = clicks[-1]
            last = {"x": c.x, "y": c.y, "positive": c.positive, "t": times[step - 1] if len(times) >= step else None}
        return {"episode": episode, "step": step, "num_steps": len(traj.clicks), "episode_id": traj.episode_id,
                "sample_id": traj.sample_id, "caption": traj.caption,
                "annotator": raw.get("annotator", "robot/agent"),
                "ious": [traj.start_iou] + [s.iou for s in traj.clicks], "click": last,
                "width": traj.width, "height": traj.height,
                "image": png_data_url(render_state(image, mask, clicks))}

    def _image(self, traj: Trajectory) -> np.ndarray:
        spec = self.dataset or traj.dataset
        if spec:
            if spec not in self._datasets:
                from hlmat_env.datasets import make_dataset

                self._datasets[spec] = make_dataset(spec)
            ds = self._datasets[spec]
            if 0 <= traj.index < len(ds):
                return ds[traj.index].image
        if traj.image and Path(traj.image).is_file():
            from PIL import Image

            return np.asarray(Image.open(traj.image).convert("RGB"))
        raise DatasetError(f"cannot load the image of {traj.episode_id!r}: no dataset spec and no image file "
                           f"({traj.image!r}); pass --dataset SPEC")
