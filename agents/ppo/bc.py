"""Behaviour cloning warm start: oracle demonstrations on the wrapped env, then cross-entropy on the policy.

Demonstrations follow the robot user's clicks snapped to the click grid (the best a grid policy can copy); with
probability ``explore`` a random grid click is taken instead (the label stays the expert's), so the clone
also sees states off the expert's path. Values are regressed on the discounted return-to-go, which gives PPO
a critic that already knows the task.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hlmat_env.wrappers import click_to_cell

log = logging.getLogger(__name__)
DEMO_FILE = "demos.npz"


def generate_demos(env: Any, n_episodes: int, *, explore: float = 0.2, gamma: float = 0.9, seed: int = 0,
                   progress: bool = True) -> dict[str, np.ndarray]:
    """Record oracle demonstrations on an :func:`~hlmat_env.wrappers.sb3_wrap`-ped env.

    Returns:
        ``image`` uint8 ``(N, C, S, S)``, ``caption`` float32 ``(N, D)`` (absent when the env has none),
        ``action`` int64 ``(N,)`` (the expert's grid action), ``ret`` float32 ``(N,)`` (return-to-go).
    """
    grid, finish = _grid_of(env)
    rng = np.random.default_rng(seed)
    u = env.unwrapped
    n_data = len(u.dataset)
    images, captions, actions, returns = [], [], [], []
    for ep in tqdm(range(n_episodes), desc="demos", disable=not progress, unit="episode"):
        obs, _ = env.reset(seed=seed + ep, options={"index": int(rng.integers(n_data))})
        rewards = []
        while True:
            click = u.expert_click()
            if click is None and not finish:
                break
            h, w = u.mask.shape
            label = click_to_cell(click, grid, w, h, finish)
            images.append(obs["image"])
            if "caption" in obs:
                captions.append(obs["caption"])
            actions.append(label)
            take = int(rng.integers(2 * grid**2)) if rng.random() < explore else label
            obs, r, term, trunc, _ = env.step(take)
            rewards.append(r)
            if term or trunc:
                break
        g, rtg = 0.0, []
        for r in reversed(rewards):
            g = r + gamma * g
            rtg.append(g)
        returns.extend(reversed(rtg))
    out = {"image": np.stack(images), "action": np.array(actions, np.int64), "ret": np.array(returns, np.float32)}
    if captions:
        out["caption"] = np.stack(captions).astype(np.float32)
    return out


def _grid_of(env: Any) -> tuple[int, bool]:
    e = env
    while e is not None:
        if hasattr(e, "grid") and hasattr(e, "finish"):
            return e.grid, e.finish
        e = getattr(e, "env", None)
    raise ValueError("generate_demos needs an env wrapped by hlmat_env.wrappers.CoarseClicks (sb3_wrap)")


def load_or_generate(folder: str | Path, env: Any, n_episodes: int, **kwargs: Any) -> dict[str, np.ndarray]:
    """Demonstrations from ``folder/demos.npz``; generated there first when the file does not exist."""
    path = Path(folder) / DEMO_FILE
    if path.exists():
        with np.load(path) as z:
            return dict(z)
    demos = generate_demos(env, n_episodes, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **demos)
    log.info("wrote %d demonstration steps to %s", len(demos["action"]), path)
    return demos


def behaviour_clone(policy: Any, demos: dict[str, np.ndarray], *, epochs: int = 10, batch_size: int = 128,
                    lr: float = 1e-3, value_coef: float = 0.5, seed: int = 0, progress: bool = True) -> list[dict]:
    """Fit an SB3 actor-critic ``policy`` to ``demos``: cross-entropy on the actions plus ``value_coef`` times
    the squared error of the value on the return-to-go. Returns one log row per epoch (loss, accuracy)."""
    from stable_baselines3.common.preprocessing import preprocess_obs

    gen = torch.Generator().manual_seed(seed)
    n = len(demos["action"])
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    keys = [k for k in ("image", "caption") if k in demos]
    tensors = {k: torch.as_tensor(demos[k]) for k in keys}
    actions, returns = torch.as_tensor(demos["action"]), torch.as_tensor(demos["ret"])
    history = []
    policy.set_training_mode(True)
    for epoch in tqdm(range(epochs), desc="behaviour cloning", disable=not progress, unit="epoch"):
        perm = torch.randperm(n, generator=gen)
        tot, correct, count = 0.0, 0, 0
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            obs = preprocess_obs({k: tensors[k][idx] for k in keys}, policy.observation_space)
            features = policy.extract_features(obs)
            latent_pi, latent_vf = policy.mlp_extractor(features)
            logits = policy.action_net(latent_pi)
            values = policy.value_net(latent_vf).flatten()
            loss = torch.nn.functional.cross_entropy(logits, actions[idx])
            loss = loss + value_coef * torch.nn.functional.mse_loss(values, returns[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item() * len(idx)
            correct += int((logits.argmax(1) == actions[idx]).sum())
            count += len(idx)
        history.append({"epoch": epoch + 1, "loss": tot / count, "accuracy": correct / count})
        log.info("bc epoch %d: loss %.4f accuracy %.3f", epoch + 1, tot / count, correct / count)
    policy.set_training_mode(False)
    return history
