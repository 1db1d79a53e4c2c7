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
        robot_clicks: how many of the first clicks the robot user placed before the agent's first act (the
            classic protocol's first click, ``run_episode(robot_clicks=1)``); they count in ``ious`` and
            ``clicks`` like the agent's, but are no decision of the agent (no ``step_seconds`` entry).
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
    robot_clicks: int = 0


def run_episode(env: Any, agent: Agent, *, index: int | None = None, seed: int | None = None,
                options: dict | None = None, record_frames: bool = False, robot_clicks: int = 0) -> Episode:
    """Reset ``env`` (a Gymnasium env, wrapped or not) on sample ``index`` and let ``agent`` act until the
    episode ends. An invalid output counts as invalid and stops the episode (the last mask is kept).

    The agent acts through :func:`agents.view.view_for` (a read-only view, never the env itself).

    Args:
        env: the env (``HLMATEnv`` or a wrapper around it).
        agent: the agent.
        index: the sample to reset on (drawn by the env when None).
        seed: the reset seed.
        options: further reset options (``start``, ``initial_mask``).
        record_frames: render the start state and the state after every click into ``Episode.frames``.
        robot_clicks: the harness first places this many robot-user clicks (``env.unwrapped.expert_action()``
            through ``env.step``), then the agent takes over: ``robot_clicks=1`` is the classic protocol's
            first click. They are clicks 1..n of the IoU curve; the agent never sees the robot user (its view
            stays unprivileged) and is reset after them. Fewer are placed when no error pixel is left.

    Returns:
        The :class:`Episode`.

    Raises:
        ValueError: ``robot_clicks`` is not an integer >= 0.
    """
    if isinstance(robot_clicks, bool) or not isinstance(robot_clicks, (int, np.integer)) or robot_clicks < 0:
        raise ValueError(f"robot_clicks must be an integer >= 0, got {robot_clicks!r}")
    opts = dict(options or {})
    if index is not None:
        opts["index"] = index
    obs, info = env.reset(seed=seed, options=opts)
    u = env.unwrapped
    ep = Episode(info["sample_id"], info["index"], info["caption"], start_iou=info["iou"],
                 intersection=info["intersection"], union=info["union"])
    if record_frames:
        ep.frames.append(render_state(u.image, u.mask, u.clicks))
    for _ in range(int(robot_clicks)):  # the harness's clicks, through the env: never through the agent's view
        if u.expert_click() is None:
            break
        obs, _, terminated, truncated, info = env.step(u.expert_action())
        ep.robot_clicks += 1
        ep.ious.append(info["iou"])
        ep.clicks.append(u.clicks[-1])
        ep.intersection, ep.union = info["intersection"], info["union"]
        if record_frames:
            ep.frames.append(render_state(u.image, u.mask, u.clicks))
        if terminated or truncated:
            return ep
    view = view_for(agent, env)
    agent.reset(view)
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
