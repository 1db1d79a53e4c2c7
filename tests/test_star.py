"""StaR+: corrected rollouts keep only IoU-raising actions, in the demonstrations' format."""
from __future__ import annotations

import numpy as np

from agents.base import Agent, Decision
from agents.random_agent import RandomAgent
from agents.star import bc_demos_from_trajectories, star_relabel
from hlmat_env.actions import Click, encode_click
from hlmat_env.trajectories import read_jsonl, write_jsonl


class SometimesGood(Agent):
    """Half the time the robot user's click, else a random click (so some actions lower the IoU)."""

    def __init__(self):
        self.rng = np.random.default_rng(0)
        self.random = RandomAgent(seed=1)

    def act(self, obs, env):
        if self.rng.random() < 0.5:
            return Decision(env.expert_action())
        if self.rng.random() < 0.1:
            h, w = env.mask.shape
            return Decision(encode_click(None, w, h, env.coord_bins))
        return self.random.act(obs, env)


def test_star_output_contains_no_iou_lowering_action(disc_segmenter, tmp_path):
    trajs, stats = star_relabel(SometimesGood(), "synthetic:train", range(6), segmenter=disc_segmenter,
                                max_clicks=8)
    assert stats.kept > 0 and stats.replaced > 0  # both kinds of step happened
    for t in trajs:
        prev = t.start_iou
        for step in t.clicks:
            assert step.iou > prev
            prev = step.iou
    path = write_jsonl(trajs, tmp_path / "star.jsonl")
    back = read_jsonl(path)
    assert [t.episode_id for t in back] == [t.episode_id for t in trajs]
    assert all(t.dataset == "synthetic:train" and t.index >= 0 for t in back)
    assert np.mean(stats.final_ious) > np.mean(stats.start_ious)


def test_bc_arrays_from_star_trajectories(disc_segmenter):
    trajs, _ = star_relabel(SometimesGood(), "synthetic:train", range(2), segmenter=disc_segmenter, max_clicks=4)
    cfg = {"size": 32, "grid": 8, "finish": False, "clicks": True, "caption": True}
    demos = bc_demos_from_trajectories(trajs, cfg)
    n = sum(len(t.clicks) for t in trajs)
    assert demos["image"].shape == (n, 6, 32, 32) and demos["action"].shape == (n,)
    assert demos["action"].max() < 2 * 8 * 8 and len(demos["caption"]) == n
