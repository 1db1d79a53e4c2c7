"""One episode of an agent on the env: the loop every command shares (benchmark, demo, StaR+, generation)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.base import Agent
from agents.view import view_for
from hlmat_env.actions import ActionKind, Click
from hlmat_env.render import render_state


@dataclass
class Episode:
    """What happened in one episode.

    Attributes:
        ious: IoU after each click (``ious[k-1]`` after k clicks); cut back to the answer's step when a
            wrapper restored an earlier state before finishing (PRM stop signal).
        clicks: the clicks placed, in order (pixel coordinates).
        start_iou: IoU of the start state.
        intersection, union: pixel counts of the final mask (for cIoU).
        finished: True when the agent chose finish (or its output was invalid) before the budget.
        invalid: number of invalid outputs (the episode stops at the first: the documented policy).
        invalid_reasons: the reasons, in order.
        step_seconds: wall time of each step (agent decision plus env step).
        frames: rendered frames (start state, then after each click) when requested.
    """

    sample_id: str
    index: int
    caption: str
    ious: list[float] = field(default_factory=list)
    clicks: list[Click] = field(default_factory=list)
    start_iou: float = 0.0
    intersection: int = 0
    union: int = 0
    finished: bool = False
    invalid: int = 0
    invalid_reasons: list[str] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)


def run_episode(env: Any, agent: Agent, *, index: int | None = None, seed: int | None = None,
                options: dict | None = None, record_frames: bool = False) -> Episode:
    """Reset ``env`` (a Gymnasium env, wrapped or not) on sample ``index`` and let ``agent`` act until the
    episode ends. An invalid output counts as invalid and stops the episode (the last mask is kept).

    The agent acts through :func:`agents.view.view_for` (a read-only view, never the env itself)."""
    opts = dict(options or {})
    if index is not None:
        opts["index"] = index
    obs, info = env.reset(seed=seed, options=opts)
    u = env.unwrapped
    view = view_for(agent, env)
    agent.reset(view)
    ep = Episode(info["sample_id"], info["index"], info["caption"], start_iou=info["iou"],
                 intersection=info["intersection"], union=info["union"])
    if record_frames:
        ep.frames.append(render_state(u.image, u.mask, u.clicks))
    while True:
        t0 = time.perf_counter()
        decision = agent.act(obs, view)
        if not decision.valid:
            ep.invalid += 1
            ep.invalid_reasons.append(decision.invalid_reason or "invalid")
            ep.finished = True
            ep.step_seconds.append(time.perf_counter() - t0)
            break
        obs, _, terminated, truncated, info = env.step(decision.action)
        ep.step_seconds.append(time.perf_counter() - t0)
        if terminated:
            ep.finished = int(decision.action[0]) == ActionKind.FINISH
            if info["num_clicks"] < len(ep.ious):  # a wrapper (PRM stop, search) restored an earlier step
                del ep.ious[info["num_clicks"]:], ep.clicks[info["num_clicks"]:]
                ep.intersection, ep.union = info["intersection"], info["union"]
            break
        ep.ious.append(info["iou"])
        ep.clicks.append(u.clicks[-1])
        ep.intersection, ep.union = info["intersection"], info["union"]
        if record_frames:
            ep.frames.append(render_state(u.image, u.mask, u.clicks))
        if truncated:
            break
    return ep
