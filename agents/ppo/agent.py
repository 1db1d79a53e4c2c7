"""``PPOAgent``: a trained PPO click policy (``ppo:PATH``; the shipped baseline when no path is given)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import Agent, Decision
from agents.shipped import shipped_asset
from hlmat_env.actions import Click, encode_click
from hlmat_env.errors import CheckpointError, require
from hlmat_env.captions import caption_code
from hlmat_env.wrappers import cell_click, click_to_cell, stack_image_mask

PLACES = ("centre", "map")
SHIPPED = "ppo_grounded.zip"  # ppo = ppo:grounded, the policy on a grounding trunk (the 30-minute recipe)
# shipped names -> (asset, PPOAgent settings they imply). Mind the two "synthetic"s: ppo:synthetic is the shipped
# grounded policy without its step judge (trained on synthetic scenes only, what ppo was before #25), while
# ppo:plain is the second session's ClickNet, whose file happens to be called ppo_synthetic.zip.
SHIPPED_NAMES: dict[str, tuple[str, dict[str, Any]]] = {
    "grounded": (SHIPPED, {}),
    "synthetic": (SHIPPED, {"use_judge": False}),
    "plain": ("ppo_synthetic.zip", {}),
}


def _shipped_name(path: str | Path | None) -> str | None:
    """The shipped name ``path`` stands for (None: the default), or None when it is a path (a file or folder of
    a shipped name's spelling wins)."""
    if path is None:
        return "grounded"
    return str(path) if str(path) in SHIPPED_NAMES and not Path(path).exists() else None


def resolve_model(path: str | Path | None) -> Path:
    """The ``.zip`` of a model: ``path`` itself, ``path/model.zip`` for a folder, the shipped grounded model
    for None, ``"grounded"`` or ``"synthetic"``, the shipped plain :class:`~agents.ppo.policy.ClickNet` policy
    for ``"plain"`` (a name is a shipped model unless a file or folder of that name exists).

    Raises:
        CheckpointError: no such model, or its ``.json`` settings are missing.
    """
    name = _shipped_name(path)
    if name is not None:
        p = shipped_asset(SHIPPED_NAMES[name][0])
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

    It rebuilds the training observation from the public views (image, mask, caption and ``view.clicks``) with
    the wrapper functions of :mod:`hlmat_env.wrappers`, and never chooses a grid action whose click is already in
    ``view.clicks`` (a repeat leaves the mask unchanged, so a deterministic policy would loop on it), nor finish
    while the mask is empty (every sample has a target, so an empty mask scores IoU 0 and any click can only do
    better; a sampled policy with some probability on *finish* there would quit episodes before the first
    click). It keeps no memory of its own: every decision is a function of the env state, so tree search can
    restore snapshots.

    Args:
        path: model ``.zip`` or training folder; None loads the shipped baseline (``agents/assets``);
            ``"synthetic"``: the same shipped policy without its step judge (what ``ppo`` was before #25).
        deterministic: take the most probable action (True) or sample it.
        seed: seed of the sampling generator.
        trunk_flips: for a policy grounded on a PRM trunk (:class:`agents.ppo.grounded.GroundedClickNet`),
            average its target map over this many flips (1-4; None: the saved ``trunk_flips`` setting).
        place: where a click goes inside the chosen grid cell: ``"centre"``, or ``"map"`` (grounded policies:
            :func:`place_in_cell`, on the click's side of the mask where the policy's own target map agrees);
            None: the saved ``place`` setting, else centre.
        positive_threshold: with ``place="map"``, refinement clicks (mask not empty) may be positive only in
            cells where the target map outside the mask reaches this value (:func:`cell_max_outside`); 0 = off,
            None: the saved setting. The shipped ``ppo:grounded`` uses ``"map"`` and 0.7 (chosen on 100
            training scenes; positive clicks just outside the object were its costliest mistake).
        use_judge: look ahead with the step judge named by the settings' ``judge`` entry (a ``.pt`` beside the
            model, :mod:`agents.ppo.judge`): on a non-empty mask the deterministic agent applies each of its
            ``judge_candidates`` most probable clicks from a snapshot of the view, restores the snapshot, and
            clicks the one the judge rates most likely to raise the IoU, or finishes when none reaches
            ``judge_threshold``. None: on when the settings name a judge.
        judge_candidates, judge_threshold: override the saved settings of those names (None: saved, else 3
            and 0.5).
    """

    name = "ppo"

    def __init__(self, path: str | Path | None = None, deterministic: bool = True, seed: int | None = 0,
                 trunk_flips: int | None = None, place: str | None = None, positive_threshold: float | None = None,
                 use_judge: bool | None = None, judge_candidates: int | None = None,
                 judge_threshold: float | None = None):
        sb3 = require("stable_baselines3", "rl")
        name = _shipped_name(path)
        if name is not None and use_judge is None:
            use_judge = SHIPPED_NAMES[name][1].get("use_judge")
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
        place = place if place is not None else self.cfg.get("place", "centre")
        if positive_threshold is None:
            positive_threshold = self.cfg.get("positive_threshold", 0.0)
        if place not in PLACES:
            raise ValueError(f"place must be one of {PLACES}, got {place!r}")
        if place == "map" and not hasattr(self.model.policy.features_extractor, "ground"):
            raise ValueError(f"place='map': the policy {self.path} predicts no target map (no PRM trunk)")
        if positive_threshold and place != "map":
            raise ValueError("positive_threshold needs place='map'")
        self.place, self.positive_threshold = place, float(positive_threshold)
        self.deterministic = deterministic
        self.rng = np.random.default_rng(seed)
        self.judge = None
        if use_judge or (use_judge is None and self.cfg.get("judge")):
            if not self.cfg.get("judge"):
                raise ValueError(f"use_judge: the settings of {self.path} name no step judge")
            from agents.ppo.judge import load_judge

            self.judge = load_judge(self.path.parent / self.cfg["judge"])
            self.judge_candidates = int(judge_candidates or self.cfg.get("judge_candidates", 3))
            self.judge_threshold = float(judge_threshold if judge_threshold is not None
                                         else self.cfg.get("judge_threshold", 0.5))

    def observation(self, obs: dict, view: Any) -> dict[str, np.ndarray]:
        """The wrapped observation the policy was trained on (see :func:`hlmat_env.wrappers.sb3_wrap`)."""
        c = self.cfg
        out = {"image": stack_image_mask(obs["image"], obs["mask"], c["size"],
                                         view.clicks if c["clicks"] else None, view.mask.shape)}
        if c["caption"]:
            out["caption"] = caption_code(obs["caption"], c.get("caption_code", "multihot"))
        return out

    def probabilities(self, obs: dict, view: Any) -> np.ndarray:
        """Action probabilities, float64 ``(n_actions,)``, zero for the grid actions of ``view.clicks`` and for
        finish while ``view.mask`` is empty."""
        import torch

        o, _ = self.model.policy.obs_to_tensor(self.observation(obs, view))
        with torch.no_grad():
            p = self.model.policy.get_distribution(o).distribution.probs[0].double().numpy()
        if self.place == "map":  # the map at image size, for the gate here and place_in_cell in _decision
            self._map = full_size(self.model.policy.features_extractor.last_target_map[0, 0].numpy(),
                                  *view.mask.shape)
            if self.positive_threshold > 0 and np.any(view.mask):  # refinement clicks only
                g = self.cfg["grid"]
                weak = cell_max_outside(view.mask, self._map, g) < self.positive_threshold
                p[: g * g][weak.ravel()] = 0.0
        p[self.used_actions(view)] = 0.0
        if self.cfg["finish"] and not np.any(view.mask):
            p[-1] = 0.0
        return p / p.sum() if p.sum() > 0 else np.full_like(p, 1.0 / len(p))

    def used_actions(self, view: Any) -> list[int]:
        """The grid actions whose cells hold a click of the same sign in ``view.clicks``."""
        g = self.cfg["grid"]
        h, w = view.mask.shape
        return [click_to_cell(c, g, w, h) for c in view.clicks]

    def _decision(self, a: int, view: Any) -> Decision:
        g = self.cfg["grid"]
        h, w = view.mask.shape
        click = None if a == 2 * g * g else cell_click(a, g, w, h)
        if click is not None and self.place == "map":
            click = place_in_cell(click, g, view.mask, self._map)
        return Decision(encode_click(click, w, h, view.coord_bins))

    def act(self, obs: dict, view: Any) -> Decision:
        """Choose the next action for ``obs`` (see :meth:`agents.base.Agent.act`)."""
        p = self.probabilities(obs, view)
        if not self.deterministic:
            return self._decision(int(self.rng.choice(len(p), p=p)), view)
        a = greedy_action(p, bool(self.cfg["finish"]))
        if self.judge is None or not np.any(view.mask) or (self.cfg["finish"] and a == len(p) - 1):
            return self._decision(a, view)
        return self.judged_decision(p, view)

    def judged_decision(self, p: np.ndarray, view: Any) -> Decision:
        """The candidate click the step judge rates best (see ``use_judge``), or finish. Looks ahead through
        ``view`` (snapshot, step, restore) and reads only what the view shows: image, masks and clicks."""
        from agents.ppo.judge import judge_input

        order = [a for a in self.top_clicks(p, self.judge_candidates) if p[a] > 0]
        decisions, planes, stats = [], [], []
        before, image = np.asarray(view.mask, bool), view.image  # the view hands out copies: read them once
        snapshot = view.snapshot()
        for a in order:
            d = self._decision(a, view)
            view.step(d.action)
            x, s = judge_input(image, before, np.asarray(view.mask, bool), view.clicks)
            view.restore(snapshot)
            decisions.append(d)
            planes.append(x)
            stats.append(s)
        scores = self.judge.prob(np.stack(planes), np.stack(stats)) if decisions else np.zeros(0)
        if not decisions or scores.max() < self.judge_threshold:
            return Decision(encode_click(None, *before.shape[::-1], view.coord_bins))  # finish
        return decisions[int(np.argmax(scores))]

    def top_clicks(self, p: np.ndarray, k: int) -> list[int]:
        """The ``k`` most probable click actions of action probabilities ``p`` (finish left out; ties in action
        order): the candidates the step judge is asked about, and recorded for its training."""
        clicks = p[: len(p) - int(bool(self.cfg["finish"]))]
        return [int(a) for a in np.argsort(-clicks, kind="stable")[:k]]

    def sample(self, obs: dict, view: Any, k: int, rng: np.random.Generator) -> list[Decision]:
        """``k`` candidate decisions for tree search (see :meth:`agents.base.Agent.sample`)."""
        p = self.probabilities(obs, view)
        return [self._decision(int(a), view) for a in rng.choice(len(p), size=k, p=p)]


def greedy_action(p: np.ndarray, finish: bool) -> int:
    """The deterministic choice from action probabilities ``p`` (last entry = finish when ``finish``): finish
    when it is more likely than clicking at all, else the most likely cell. (A plain arg-max would finish far
    too early: the click mass is spread over many cells that are all good, while finish is one action.)"""
    if finish and p[-1] >= 1.0 - p[-1]:
        return len(p) - 1
    return int(p[: len(p) - int(finish)].argmax())


def place_in_cell(click: Click, grid: int, mask: np.ndarray, target_map: np.ndarray) -> Click:
    """``click`` moved inside its grid cell to the pixel on its side of ``mask`` (outside it for a positive
    click, inside for a negative one) where ``target_map`` (the policy's own predicted target at the mask's
    size, :func:`full_size`) is highest (positive) or lowest (negative); unchanged when no pixel of the cell
    lies on that side. Why: the errors left after the first clicks are thin bands along the boundary, a
    cell is 5x4 pixels, and a positive click one or two pixels outside the object makes the segmenter grab
    background (a one-off count on synthetic:val: such clicks cost 0.16 IoU each)."""
    h, w = mask.shape
    row, col = divmod(click_to_cell(click, grid, w, h) % grid**2, grid)
    rows, cols = _pixel_cells(h, w, grid)
    ys, xs = np.flatnonzero(rows == row), np.flatnonzero(cols == col)
    cell_mask = mask[np.ix_(ys, xs)].astype(bool)
    side = ~cell_mask if click.positive else cell_mask
    if not side.any():
        return click
    score = target_map[np.ix_(ys, xs)]
    score = np.where(side, score if click.positive else -score, -np.inf)
    r, c = np.unravel_index(int(np.argmax(score)), score.shape)
    return Click(int(xs[c]), int(ys[r]), click.positive)


def cell_max_outside(mask: np.ndarray, target_map: np.ndarray, grid: int) -> np.ndarray:
    """Per grid cell, the highest ``target_map`` value (at the mask's size) over the cell's pixels outside
    ``mask``: float ``(grid, grid)``, -inf where the whole cell is inside. What :func:`place_in_cell` would reach
    with a positive click there."""
    h, w = mask.shape
    if h < grid or w < grid:
        return np.full((grid, grid), np.inf)  # cells narrower than a pixel: no gate
    score = np.where(mask.astype(bool), -np.inf, target_map)
    rows, cols = _pixel_cells(h, w, grid)
    row_starts, col_starts = np.searchsorted(rows, np.arange(grid)), np.searchsorted(cols, np.arange(grid))
    return np.maximum.reduceat(np.maximum.reduceat(score, row_starts, axis=0), col_starts, axis=1)


def _pixel_cells(h: int, w: int, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """The grid row of every pixel row and the grid column of every pixel column (as :func:`click_to_cell`)."""
    return np.arange(h) * grid // h, np.arange(w) * grid // w


def full_size(target_map: np.ndarray, h: int, w: int) -> np.ndarray:
    """A square target map resized (bilinear) to ``h x w`` pixels."""
    import cv2

    return cv2.resize(target_map.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
