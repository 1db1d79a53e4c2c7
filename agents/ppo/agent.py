"""``PPOAgent``: a trained PPO click policy (``ppo:PATH``; the shipped baseline when no path is given)."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import Agent, Decision
from hlmat_env.actions import encode_click
from hlmat_env.errors import CheckpointError, require
from hlmat_env.captions import caption_code
from hlmat_env.wrappers import cell_click, click_to_cell, stack_image_mask

SHIPPED = "ppo_synthetic.zip"
SHIPPED_NAMES = {"grounded": "ppo_grounded.zip"}  # ppo:grounded, the policy on the PRM's trunk


def resolve_model(path: str | Path | None) -> Path:
    """The ``.zip`` of a model: ``path`` itself, ``path/model.zip`` for a folder, the shipped model for None,
    the shipped grounded model for ``"grounded"`` (unless a file or folder of that name exists).

    Raises:
        CheckpointError: no such model, or its ``.json`` settings are missing.
    """
    if path is None or (str(path) in SHIPPED_NAMES and not Path(path).exists()):
        p = Path(str(resources.files("agents") / "assets" / SHIPPED_NAMES.get(str(path), SHIPPED)))
    else:
        p = Path(path)
        p = p / "model.zip" if p.is_dir() else p.with_suffix(".zip")
    if not p.exists():
        raise CheckpointError(f"PPO model not found: {p} (train one with `hlmat train-ppo --out DIR`)")
    if not p.with_suffix(".json").exists():
        raise CheckpointError(f"PPO model {p} has no settings file {p.with_suffix('.json')} beside it")
    return p


class PPOAgent(Agent):
    """Acts with a policy trained by :func:`agents.ppo.train.train` on the env's observation.

    It rebuilds the training observation from the public views (image, mask, caption and ``env.clicks``) with
    the wrapper functions of :mod:`hlmat_env.wrappers`, and never chooses a grid action whose click is already in
    ``env.clicks`` (a repeat leaves the mask unchanged, so a deterministic policy would loop on it), nor finish
    while the mask is empty (every sample has a target, so an empty mask scores IoU 0 and any click can only do
    better; sampled grounded policies with ~6% on *finish* there quit 5-10% of their episodes before the first
    click). It keeps no memory of its own: every decision is a function of the env state, so tree search can
    restore snapshots.

    Args:
        path: model ``.zip`` or training folder; None loads the shipped baseline (``agents/assets``).
        deterministic: take the most probable action (True) or sample it.
        seed: seed of the sampling generator.
        trunk_flips: for a policy grounded on a PRM trunk (:class:`agents.ppo.grounded.GroundedClickNet`),
            average its target map over this many flips (1-4; None: the saved ``trunk_flips`` setting).
    """

    name = "ppo"

    def __init__(self, path: str | Path | None = None, deterministic: bool = True, seed: int | None = 0,
                 trunk_flips: int | None = None):
        sb3 = require("stable_baselines3", "rl")
        self.path = resolve_model(path)
        self.cfg = json.loads(self.path.with_suffix(".json").read_text())
        self.model = sb3.PPO.load(self.path, device="cpu")
        self.model.policy.set_training_mode(False)  # a loaded policy is in training mode (BatchNorm, dropout)
        trunk_flips = trunk_flips if trunk_flips is not None else self.cfg.get("trunk_flips")
        if trunk_flips is not None:
            fe = self.model.policy.features_extractor
            if not hasattr(fe, "flips"):
                raise ValueError(f"trunk_flips: the policy {self.path} has no PRM trunk")
            fe.flips = trunk_flips  # validated by GroundedClickNet
        self.deterministic = deterministic
        self.rng = np.random.default_rng(seed)

    def observation(self, obs: dict, env: Any) -> dict[str, np.ndarray]:
        """The wrapped observation the policy was trained on (see :func:`hlmat_env.wrappers.sb3_wrap`)."""
        c = self.cfg
        out = {"image": stack_image_mask(obs["image"], obs["mask"], c["size"],
                                         env.clicks if c["clicks"] else None, env.mask.shape)}
        if c["caption"]:
            out["caption"] = caption_code(obs["caption"], c.get("caption_code", "multihot"))
        return out

    def probabilities(self, obs: dict, env: Any) -> np.ndarray:
        """Action probabilities, float64 ``(n_actions,)``, zero for the grid actions of ``env.clicks`` and for
        finish while ``env.mask`` is empty."""
        import torch

        o, _ = self.model.policy.obs_to_tensor(self.observation(obs, env))
        with torch.no_grad():
            p = self.model.policy.get_distribution(o).distribution.probs[0].double().numpy()
        p[self.used_actions(env)] = 0.0
        if self.cfg["finish"] and not np.any(env.mask):
            p[-1] = 0.0
        return p / p.sum() if p.sum() > 0 else np.full_like(p, 1.0 / len(p))

    def used_actions(self, env: Any) -> list[int]:
        """The grid actions whose cells hold a click of the same sign in ``env.clicks``."""
        g = self.cfg["grid"]
        h, w = env.mask.shape
        return [click_to_cell(c, g, w, h) for c in env.clicks]

    def _decision(self, a: int, env: Any) -> Decision:
        g = self.cfg["grid"]
        h, w = env.mask.shape
        click = None if a == 2 * g * g else cell_click(a, g, w, h)
        return Decision(encode_click(click, w, h, env.coord_bins))

    def act(self, obs: dict, env: Any) -> Decision:
        p = self.probabilities(obs, env)
        if not self.deterministic:
            return self._decision(int(self.rng.choice(len(p), p=p)), env)
        return self._decision(greedy_action(p, bool(self.cfg["finish"])), env)

    def sample(self, obs: dict, env: Any, k: int, rng: np.random.Generator) -> list[Decision]:
        p = self.probabilities(obs, env)
        return [self._decision(int(a), env) for a in rng.choice(len(p), size=k, p=p)]


def greedy_action(p: np.ndarray, finish: bool) -> int:
    """The deterministic choice from action probabilities ``p`` (last entry = finish when ``finish``): finish
    when it is more likely than clicking at all, else the most likely cell. (A plain arg-max would finish far
    too early: the click mass is spread over many cells that are all good, while finish is one action.)"""
    if finish and p[-1] >= 1.0 - p[-1]:
        return len(p) - 1
    return int(p[: len(p) - int(finish)].argmax())
