"""Transitions for the step judge (:mod:`agents.ppo.judge`): states under the benchmark protocols, one click
each, labelled with the IoU change the env reports.

Each episode starts under a protocol drawn per episode: the robot user's first click (``"robot"``, as
``--first-click robot``: the robot user's click is placed first and not recorded), or the target's box
(``"box"``, as ``--start box``). Each later click is, at random, the robot user's (``expert``), one of the
proposing policy's four most probable clicks (the clicks the judge will be asked about when it acts), or a
random grid click; the episode goes on with the click taken. With probability ``drop_caption`` the policy
sees an empty caption (folder sets have none). The judge's input never contains the caption or the target.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agents.ppo.judge import judge_input
from agents.view import view_for
from hlmat_env.actions import Click, encode_click

SOURCES = ("expert", "policy", "random")


def record_transitions(dataset: Any, indices: list[int], *, proposer: Any, box_frac: float = 0.4,
                       max_steps: int = 6, mix: tuple[float, float, float] = (0.3, 0.55, 0.15),
                       drop_caption: float = 1.0, size: int = 64, seed: int = 0,
                       segmenter: Any = "default", progress: bool = True) -> dict[str, np.ndarray]:
    """Record one episode per entry of ``indices`` (repeats allowed) of ``dataset`` (a spec or dataset object).

    Args:
        proposer: a :class:`agents.ppo.agent.PPOAgent` whose top clicks are recorded (``mix[1]`` of the time).
        box_frac: probability that an episode starts from the box instead of the robot user's first click.
        max_steps: recorded clicks per episode, drawn uniformly from 1..max_steps.
        mix: probabilities of the expert's, the policy's and a random click.
        drop_caption: probability that the proposer sees an empty caption in an episode.
        size: side of the judge's planes.
        segmenter: as for ``gym.make("HLMATEnv-v0", segmenter=...)``.

    Returns:
        ``planes`` uint8 ``(N, 10, size, size)``, ``stats`` float32 ``(N, 6)``, ``delta`` float32 ``(N,)`` (the
        IoU change), ``iou`` float32 ``(N,)`` (the IoU before the click), ``source`` int8 (index into
        :data:`SOURCES`), ``box`` bool (box start), ``index`` int32 (the dataset sample).
    """
    import gymnasium as gym

    import hlmat_env  # noqa: F401  (registers HLMATEnv-v0)

    rng = np.random.default_rng(seed)
    env = gym.make("HLMATEnv-v0", dataset=dataset, segmenter=segmenter, max_clicks=20)
    u = env.unwrapped
    rows: dict[str, list] = {k: [] for k in ("planes", "stats", "delta", "iou", "source", "box", "index")}
    try:
        for ep, index in enumerate(tqdm(indices, desc="transitions", disable=not progress, unit="episode")):
            box = bool(rng.random() < box_frac)
            obs, info = env.reset(seed=seed + ep, options={"index": int(index), "start": "box" if box else "empty"})
            if not box:
                if u.expert_click() is None:
                    continue
                obs, _, term, trunc, info = env.step(u.expert_action())
                if term or trunc:
                    continue
            view = view_for(proposer, env)
            proposer.reset(view)
            no_caption = rng.random() < drop_caption
            for _ in range(int(rng.integers(1, max_steps + 1))):
                before, iou = u.mask.copy(), info["iou"]
                if not before.any():
                    break
                source = int(rng.choice(3, p=mix))
                action = _action(source, u, proposer, dict(obs, caption="") if no_caption else obs, view, rng)
                if action is None:
                    break
                obs, _, term, trunc, info = env.step(action)
                planes, stats = judge_input(u.image, before, u.mask, u.clicks, size)
                for k, v in zip(rows, (planes, stats, info["iou"] - iou, iou, source, box, index)):
                    rows[k].append(v)
                if term or trunc:
                    break
    finally:
        env.close()
    types = {"delta": np.float32, "iou": np.float32, "source": np.int8, "box": bool, "index": np.int32}
    return {k: np.stack(v) if k in ("planes", "stats") else np.asarray(v, types[k]) for k, v in rows.items()}


def _action(source: int, u: Any, proposer: Any, obs: dict, view: Any, rng: np.random.Generator) -> Any:
    """The env action of one recorded click (None: nothing to click)."""
    h, w = u.mask.shape
    if source == 0:
        return u.expert_action() if u.expert_click() is not None else None
    if source == 2:
        return encode_click(Click(int(rng.integers(w)), int(rng.integers(h)), bool(rng.random() < 0.5)),
                            w, h, u.coord_bins)
    p = proposer.probabilities(obs, view)
    top = np.array(proposer.top_clicks(p, 4))
    weights = p[top] / p[top].sum() if p[top].sum() > 0 else np.full(len(top), 1.0 / len(top))
    return proposer._decision(int(rng.choice(top, p=weights)), view).action


def save_transitions(data: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write recorded transitions to ``path`` (compressed ``.npz``, renamed into place when complete)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.npz")
    np.savez_compressed(tmp, **data)
    tmp.replace(path)
    return path
