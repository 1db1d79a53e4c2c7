"""Agents act through a read-only view: a deliberately cheating agent tries every route to the target, the
dataset, the robot user and the IoU, and each one fails; the oracle's privilege is explicit."""
from __future__ import annotations

import gc

import gymnasium as gym
import numpy as np
import pytest

import hlmat_env  # noqa: F401
from agents import make_agent, run_episode
from agents.base import Agent, Decision
from agents.baselines.random_agent import RandomAgent
from agents.tools.benchmark import benchmark
from agents.view import EpisodeView, PrivilegedView, Snapshot, StateView, view_for
from hlmat_env.env import HLMATEnv

PRIVATE = ("env", "unwrapped", "_env", "dataset", "target", "sample", "_sample", "expert_action",
           "expert_click", "robot_user", "get_state", "set_state", "iou", "_iou", "start_iou", "click",
           "segmenter", "np_random", "index", "sample_id")


def _leads_to_env(obj, depth: int = 3) -> bool:
    """Whether the env or a target array is reachable from ``obj`` through referents (a few levels deep)."""
    seen, frontier = set(), [obj]
    for _ in range(depth):
        nxt = []
        for o in frontier:
            for r in gc.get_referents(o):
                if isinstance(r, (HLMATEnv, gym.Env)):
                    return True
                if id(r) not in seen and not isinstance(r, type):
                    seen.add(id(r))
                    nxt.append(r)
        frontier = nxt
    return False


class Cheater(Agent):
    """Tries every route to privileged information, records which ones worked, then clicks at random."""

    name = "cheater"

    def __init__(self):
        self.worked: list[str] = []
        self.random, self.probe = RandomAgent(seed=0), RandomAgent(seed=1)  # acts / looks ahead

    def _try(self, route: str, fn) -> None:
        try:
            fn()
        except (AttributeError, TypeError, ValueError, KeyError):
            return
        self.worked.append(route)

    def act(self, obs, view):
        for name in PRIVATE:
            self._try(f"view.{name}", lambda n=name: getattr(view, n))
        self._try("vars(view)", lambda: vars(view))
        self._try("view.__dict__", lambda: view.__dict__)
        if _leads_to_env(view):
            self.worked.append("gc.get_referents(view)")
        snap = view.snapshot()
        self._try("vars(snapshot)", lambda: vars(snap))
        for name in ("state", "_state", "iou", "target", "start_iou", "env"):
            self._try(f"snapshot.{name}", lambda n=name: getattr(snap, n))
        if _leads_to_env(snap):
            self.worked.append("gc.get_referents(snapshot)")
        self._try("restore(dict)", lambda: view.restore({"index": 0, "clicks": []}))
        self._try("restore(foreign snapshot)", lambda: view.restore(EpisodeView(self.other_env).snapshot()))
        step = view.step(self.probe.act(obs, view).action)  # look-ahead: no reward, no info
        if len(step) != 3 or any(isinstance(v, (dict, float)) and not isinstance(v, bool) for v in step[1:]):
            self.worked.append("step() returned more than obs and end flags")
        if set(step.obs) - {"image", "mask", "caption"}:
            self.worked.append("step() observation holds more than image, mask and caption")
        view.restore(snap)
        mask, image = view.mask, view.image
        self._try("write view.mask", lambda: mask.__setitem__((0, 0), not mask[0, 0]))
        self._try("write view.image", lambda: image.__setitem__((0, 0, 0), 7))
        self._try("set view.mask", lambda: setattr(view, "mask", np.ones_like(mask)))
        self._try("set view.clicks", lambda: view.clicks.append(None))
        self._try("set an attribute", lambda: setattr(view, "env", 1))
        return self.random.act(obs, view)


def test_cheating_agent_finds_no_route():
    env = gym.make("HLMATEnv-v0", dataset="synthetic:val", max_clicks=3)
    cheater = Cheater()
    cheater.other_env = gym.make("HLMATEnv-v0", dataset="synthetic:val")
    cheater.other_env.reset(seed=0)
    ep = run_episode(env, cheater, index=0, seed=0)
    assert len(ep.ious) == 3  # the episode ran with its clicks
    assert cheater.worked == [], cheater.worked


def test_cheater_scores_as_random_and_its_lookahead_leaves_the_episode_as_it_was():
    env = gym.make("HLMATEnv-v0", dataset="synthetic:val", max_clicks=3)
    cheater = Cheater()
    cheater.other_env = gym.make("HLMATEnv-v0", dataset="synthetic:val")
    cheater.other_env.reset(seed=0)
    a = run_episode(env, cheater, index=2, seed=0)
    b = run_episode(env, RandomAgent(seed=0), index=2, seed=0)
    assert a.ious == b.ious and a.clicks == b.clicks


def test_view_reads_the_episode_as_copies():
    env = gym.make("HLMATEnv-v0", dataset="synthetic:val")
    env.reset(seed=0, options={"index": 1})
    u, view = env.unwrapped, EpisodeView(env)
    env.step(u.expert_action())
    assert np.array_equal(view.image, u.image) and np.array_equal(view.mask, u.mask)
    assert view.caption == u.caption and view.clicks == tuple(u.clicks) and view.num_clicks == 1
    assert view.coord_bins == u.coord_bins and view.max_clicks == u.max_clicks and view.obs_size == u.obs_size
    assert not view.mask.flags.writeable and not view.image.flags.writeable
    assert not np.shares_memory(view.image, u.image)


def test_snapshot_restore_and_step_round_trip():
    env = gym.make("HLMATEnv-v0", dataset="synthetic:val")
    env.reset(seed=0, options={"index": 1})
    u, view = env.unwrapped, EpisodeView(env)
    snap = view.snapshot()
    assert isinstance(snap, Snapshot) and repr(snap) == "<Snapshot>"
    obs, terminated, truncated = view.step(u.expert_action())
    assert view.num_clicks == 1 and obs["mask"].any() and not terminated and not truncated
    view.restore(snap)
    assert view.num_clicks == 0 and not view.mask.any()
    with pytest.raises(ValueError, match="Snapshot made by this view"):
        EpisodeView(env).restore(snap)


def test_privilege_is_explicit():
    env = gym.make("HLMATEnv-v0", dataset="synthetic:val")
    env.reset(seed=0)
    oracle, rnd = make_agent("oracle"), make_agent("random")
    assert oracle.privileged and not rnd.privileged
    assert type(view_for(oracle, env)) is PrivilegedView and type(view_for(rnd, env)) is EpisodeView
    assert np.array_equal(view_for(oracle, env).expert_action(), env.unwrapped.expert_action())
    assert not hasattr(view_for(rnd, env), "expert_action")


def test_agents_in_the_registry_are_not_privileged_except_the_oracle():
    from agents.base import AGENTS, _import_builtin_agents

    _import_builtin_agents()
    for kind, factory in AGENTS.items():
        if kind in ("ppo", "mllm"):  # they need a model file; their classes are checked instead
            continue
        assert factory(None).privileged == (kind == "oracle"), kind
    from agents.ppo import PPOAgent

    assert not PPOAgent.privileged
    mllm = pytest.importorskip("agents.mllm.policy")
    assert not mllm.MLLMAgent.privileged


def test_state_view_is_read_only():
    s = StateView(np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5), bool), "x")
    assert s.num_clicks == 0 and not s.mask.flags.writeable
    with pytest.raises(AttributeError):
        s.target = 1  # noqa: B010


def test_benchmark_of_the_oracle_is_unchanged_by_the_view():
    """The oracle, through its privileged view, still reaches the robot user's IoU (a sanity check that the
    view passes every action through unchanged)."""
    r = benchmark(["oracle"], dataset="synthetic:val", limit=3, max_clicks=5, seed=0, progress=False)
    assert r.metrics["oracle"]["miou@5"] > 0.8
