"""Run a trained :class:`~agents.rllib.module.ClickCNNModule` (or random actions) on episodes, in process.

:func:`module_episodes` plays whole episodes of :func:`agents.rllib.env.make_env` envs with the module's
greedy (argmax) or sampled action and returns each episode's final IoU, so a policy trained by RLlib can be
scored without Ray (the module reads only the observation, never the target).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def module_action(module: Any, obs: Mapping[str, np.ndarray], greedy: bool = True,
                  rng: np.random.Generator | None = None) -> int:
    """The module's action for one observation: argmax of its logits, or a sample when not ``greedy``.

    Args:
        module: an RLModule whose ``forward_inference`` returns ``action_dist_inputs`` (categorical logits).
        obs: one observation of a :func:`~agents.rllib.env.make_env` env (no batch dimension).
        greedy: argmax (True) or sample from the softmax (False, using ``rng``).
        rng: random generator for sampling (default: a fresh unseeded one).
    """
    import torch
    from ray.rllib.core.columns import Columns

    batch = {Columns.OBS: {k: torch.as_tensor(np.asarray(v)[None]) for k, v in obs.items()}}
    with torch.no_grad():
        logits = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS][0]
    if greedy:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.double(), 0).numpy()
    return int((rng or np.random.default_rng()).choice(len(probs), p=probs / probs.sum()))


def module_episodes(module: Any | None, env_config: Mapping[str, Any], episodes: int, seed: int = 0,
                    greedy: bool = True) -> list[float]:
    """Final IoU of ``episodes`` episodes (samples ``0..episodes-1`` of the dataset, in order).

    Args:
        module: the RLModule, or None for uniformly random actions of the same action space.
        env_config: the env config (:func:`agents.rllib.env.env_config` keys).
        episodes: number of episodes.
        seed: seeds the resets and the random policy.
        greedy: argmax actions (True) or sampled ones.

    Returns:
        One final ``info["iou"]`` per episode.
    """
    from agents.rllib.env import make_env

    env = make_env(env_config)
    env.action_space.seed(seed)
    rng = np.random.default_rng(seed)
    ious = []
    try:
        for ep in range(int(episodes)):
            obs, info = env.reset(seed=seed + ep, options={"index": ep % len(env.unwrapped.dataset)})
            done = False
            while not done:
                action = (env.action_space.sample() if module is None
                          else module_action(module, obs, greedy=greedy, rng=rng))
                obs, _, terminated, truncated, info = env.step(action)
                done = terminated or truncated
            ious.append(float(info["iou"]))
    finally:
        env.close()
    return ious
