"""PRM stop signal and PRM-guided tree search: properties they must have (test segmenter, oracle PRM)."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import hlmat_env  # noqa: F401
from agents.base import Agent, Decision
from agents.rollout import run_episode
from agents.prm.search import TreeSearch
from agents.prm.stop import PRMStop
from agents.view import view_for
from hlmat_env.actions import Click, encode_click
from hlmat_env.metrics import iou


class OraclePRM:
    """Test-only PRM: the true IoU (reads the target through the env, which no shipped PRM does)."""

    def __init__(self, env):
        self.u, self.targets = env.unwrapped, {}

    def _target(self):
        i = self.u.get_state()["index"]
        if i not in self.targets:
            self.targets[i] = self.u.dataset[i].target
        return self.targets[i]

    def score(self, image, mask, caption=""):
        return iou(mask, self._target())

    def score_batch(self, image, masks, caption=""):
        return [self.score(image, m, caption) for m in masks]


class NoisyExpert(Agent):
    """The robot user's click, moved by Gaussian noise (deterministic ``act`` per state, random ``sample``)."""

    name = "noisy"
    privileged = True  # it perturbs the robot user's click, so it acts through the privileged view

    def __init__(self, sigma=8.0):
        self.sigma = sigma

    def _draw(self, env, rng):
        c = env.expert_click()
        h, w = env.mask.shape
        if c is None:
            return Decision(encode_click(None, w, h, env.coord_bins))
        x = int(np.clip(round(c.x + rng.normal(0, self.sigma)), 0, w - 1))
        y = int(np.clip(round(c.y + rng.normal(0, self.sigma)), 0, h - 1))
        return Decision(encode_click(Click(x, y, not bool(env.mask[y, x])), w, h, env.coord_bins))

    def act(self, obs, env):
        return self._draw(env, np.random.default_rng(len(env.clicks)))

    def sample(self, obs, env, k, rng):
        return [self._draw(env, rng) for _ in range(k)]


def _env(seg, max_clicks):
    return gym.make("HLMATEnv-v0", dataset="synthetic:val", segmenter=seg, max_clicks=max_clicks)


def test_search_with_oracle_prm_never_below_k1_on_one_click(disc_segmenter):
    env = _env(disc_segmenter, 1)
    for i in range(8):
        plain = run_episode(env, NoisyExpert(), index=i, seed=i)
        searched = run_episode(env, TreeSearch(NoisyExpert(), OraclePRM(env), k=3, seed=i), index=i, seed=i)
        final = searched.ious[-1] if searched.ious else searched.start_iou
        assert final >= plain.ious[-1] - 1e-12


@pytest.mark.parametrize("beam", [1, 2])
def test_search_with_oracle_prm_not_below_k1_over_episodes(disc_segmenter, beam):
    env = _env(disc_segmenter, 4)
    plain, searched = [], []
    for i in range(6):
        plain.append(run_episode(env, NoisyExpert(), index=i, seed=i).ious[-1])
        ep = run_episode(env, TreeSearch(NoisyExpert(), OraclePRM(env), k=3, beam=beam, seed=i), index=i, seed=i)
        searched.append(ep.ious[-1] if ep.ious else ep.start_iou)
        assert searched[-1] >= plain[-1] - 1e-12, (i, searched, plain)
    assert np.mean(searched) > np.mean(plain)


def test_search_replays_its_best_step_and_restores_env(disc_segmenter):
    env = _env(disc_segmenter, 5)
    env.reset(seed=0, options={"index": 3})
    u = env.unwrapped
    search = TreeSearch(NoisyExpert(), OraclePRM(env), k=3, beam=2)
    view = view_for(search, env)  # privileged: the wrapped NoisyExpert perturbs the robot user's clicks
    search.reset(view)
    before = u.get_state()
    best = search.search({}, view)
    assert u.clicks == before["clicks"] and np.array_equal(u.mask, before["pred"].mask)
    ep = run_episode(env, TreeSearch(NoisyExpert(), OraclePRM(env), k=3, beam=2), index=3, seed=0)
    assert len(ep.ious) == len(best.path)
    assert ep.ious[-1] == pytest.approx(best.score)


class ScriptedAgent(Agent):
    """Clicks disjoint discs left to right (positive), one per step."""

    name = "scripted"

    def act(self, obs, env):
        h, w = env.mask.shape
        return Decision(encode_click(Click(10 + 20 * len(env.clicks), h // 2, True), w, h, env.coord_bins))


class CountPRM:
    """Scores a mask by how many discs it holds, from a fixed table (a PRM whose estimate is known)."""

    def __init__(self, table):
        self.table = table

    def score(self, image, mask, caption=""):
        from scipy.ndimage import label

        return self.table[label(mask)[1]]

    def score_batch(self, image, masks, caption=""):
        return [self.score(image, m) for m in masks]


@pytest.mark.parametrize("patience, table, answer_clicks", [
    (1, [0.1, 0.5, 0.7, 0.6, 0.8, 0.9], 2),     # stops at the first non-improving estimate
    (2, [0.1, 0.5, 0.7, 0.6, 0.55, 0.9], 2),    # two bad steps applied, then the best state is restored
    (2, [0.1, 0.5, 0.7, 0.6, 0.8, 0.9], 5),     # a dip within patience, then improves to the budget
    (1, [0.9, 0.5, 0.7, 0.6, 0.8, 0.9], 0),     # the start state is the best estimate
])
def test_prm_stop_answers_best_estimated_step(disc_segmenter, patience, table, answer_clicks):
    env = _env(disc_segmenter, 5)
    ep = run_episode(env, PRMStop(ScriptedAgent(), CountPRM(table), patience=patience), index=0, seed=0)
    u = env.unwrapped
    assert len(ep.ious) == answer_clicks == len(u.clicks)
    from scipy.ndimage import label

    assert label(u.mask)[1] == answer_clicks
    if answer_clicks:
        assert ep.ious[-1] == pytest.approx(iou(u.mask, u.dataset[0].target))
