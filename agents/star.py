"""StaR+: improve a policy with its own rollouts, corrected by the robot user (SegAgent, REFERENCE.md section 3).

:func:`star_trajectory` rolls the policy out on one training sample. Each policy click that strictly raises the
IoU is kept; any other decision (a click that lowers or keeps the IoU, finish, an invalid output) is undone
with ``env.set_state`` and replaced by the robot user's click (``env.expert_click()``). When the robot user's
own click does not raise the IoU either, the trajectory ends (SegAgent's recording rule), as it does at
IoU >= ``tau_stop`` or after ``max_clicks`` clicks. Every kept step therefore raises the IoU. The result is a
:class:`hlmat_env.trajectories.Trajectory` from the empty start (episode id ``SAMPLE#star``), written in the
demonstrations' JSONL format.

Retraining on the union with the original demonstrations:

* PPO/BC policy: :func:`retrain_bc` turns every step of the union into the policy's (observation, grid
  action) pairs and behaviour-clones a fresh policy with :func:`agents.ppo.bc.behaviour_clone`;
* MLLM policy: export the union for supervised fine-tuning (``hlmat export``) and fine-tune from the base
  model on it, as for the original demonstrations.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from agents.base import Agent
from hlmat_env.actions import ActionKind
from hlmat_env.masks import encode_rle
from hlmat_env.trajectories import Step, Trajectory

log = logging.getLogger(__name__)


@dataclass
class StarStats:
    """Counts over StaR+ rollouts: policy clicks kept, decisions replaced by the robot user, episodes."""

    kept: int = 0
    replaced: int = 0
    episodes: int = 0
    start_ious: list[float] = field(default_factory=list)
    final_ious: list[float] = field(default_factory=list)

    @property
    def kept_fraction(self) -> float:
        n = self.kept + self.replaced
        return self.kept / n if n else float("nan")


def star_trajectory(env: Any, agent: Agent, index: int, *, seed: int | None = None, max_clicks: int = 20,
                    tau_stop: float = 0.98, dataset_spec: str = "", segmenter_name: str = "",
                    stats: StarStats | None = None) -> Trajectory:
    """One corrected rollout of ``agent`` on sample ``index`` of ``env`` (a ``gym.make`` env) from empty."""
    obs, info = env.reset(seed=seed, options={"index": index})
    u = env.unwrapped
    agent.reset(u)
    sample = u.dataset[index]  # the corrector is the robot user: it may see the target
    gt = sample.target > 0
    iou = start_iou = float(info["iou"])
    steps: list[Step] = []
    stats = stats if stats is not None else StarStats()
    while len(steps) < max_clicks and iou < tau_stop:
        decision = agent.act(obs, u)
        snapshot = u.get_state()
        kept = False
        if decision.valid and int(decision.action[0]) != ActionKind.FINISH:
            new_obs, _, _, truncated, info = env.step(decision.action)
            kept = info["iou"] > iou
            if not kept:
                u.set_state(snapshot)
        if not kept:
            click = u.expert_click()
            if click is None:
                break
            new_obs, _, _, truncated, info = u.click(click)
            if info["iou"] <= iou:
                break
        stats.kept += kept
        stats.replaced += not kept
        obs, iou = new_obs, float(info["iou"])
        c = u.clicks[-1]
        steps.append(Step(int(c.x), int(c.y), bool(c.positive), iou, encode_rle(u.mask)))
        if truncated:
            break
    stats.episodes += 1
    stats.start_ious.append(start_iou)
    stats.final_ious.append(iou)
    h, w = gt.shape
    return Trajectory(sample_id=sample.sample_id, height=h, width=w, target=encode_rle(gt), clicks=steps,
                      caption=sample.caption, image=sample.image_ref, dataset=dataset_spec, index=int(index),
                      segmenter=segmenter_name, start="empty", start_iou=start_iou, seed=seed,
                      episode_id=f"{sample.sample_id}#star")


def star_relabel(agent: Agent, dataset: Any = "synthetic:train", indices: Iterable[int] | None = None, *,
                 segmenter: Any = "default", limit: int | None = None, max_clicks: int = 20, seed: int = 0,
                 progress: bool = False) -> tuple[list[Trajectory], StarStats]:
    """:func:`star_trajectory` on each sample ``indices`` (default: the first ``limit``, or all)."""
    import gymnasium as gym
    from tqdm.auto import tqdm

    import hlmat_env  # noqa: F401

    env = gym.make("HLMATEnv-v0", dataset=dataset, segmenter=segmenter, max_clicks=max_clicks)
    n = len(env.unwrapped.dataset)
    ix = list(range(n if limit is None else min(n, limit))) if indices is None else list(indices)
    stats, trajs = StarStats(), []
    spec = dataset if isinstance(dataset, str) else ""
    seg_name = segmenter if isinstance(segmenter, str) else getattr(segmenter, "name", "")
    for i in tqdm(ix, desc="StaR+", disable=not progress, unit="sample"):
        s = int(np.random.SeedSequence([seed, int(i)]).generate_state(1)[0])
        if isinstance(getattr(agent, "rng", None), np.random.Generator):
            agent.rng = np.random.default_rng(s)
        trajs.append(star_trajectory(env, agent, int(i), seed=s, max_clicks=max_clicks, dataset_spec=spec,
                                     segmenter_name=seg_name, stats=stats))
    env.close()
    return trajs, stats


def bc_demos_from_trajectories(trajs: Sequence[Trajectory], cfg: dict, gamma: float = 0.9) -> dict[str, np.ndarray]:
    """The PPO policy's behaviour-cloning arrays (:func:`agents.ppo.bc.generate_demos`' format) from
    trajectories: one row per click, the observation the policy saw before it and the click's grid action.

    Args:
        trajs: trajectories whose ``dataset`` spec and ``index`` reload the image.
        cfg: the policy's :class:`agents.ppo.train.PPOConfig` as a dict (``size``, ``grid``, ``finish``,
            ``clicks``, ``caption``).
    """
    from hlmat_env.datasets import make_dataset
    from hlmat_env.wrappers import click_to_cell, encode_caption, stack_image_mask

    datasets: dict[str, Any] = {}
    images, captions, actions, returns = [], [], [], []
    for t in trajs:
        if not t.dataset or t.index < 0:
            raise ValueError(f"trajectory {t.episode_id!r} names no dataset/index: cannot reload its image")
        ds = datasets.setdefault(t.dataset, make_dataset(t.dataset))
        image = ds[t.index].image
        rewards = []
        for k, step in enumerate(t.clicks):
            mask = t.mask_before(k).astype(np.uint8) * 255
            clicks = [s.click for s in t.clicks[:k]] if cfg["clicks"] else None
            images.append(stack_image_mask(image, mask, cfg["size"], clicks, mask.shape))
            if cfg["caption"]:
                captions.append(encode_caption(t.caption))
            actions.append(click_to_cell(step.click, cfg["grid"], t.width, t.height, cfg["finish"]))
            rewards.append(step.iou - t.iou_before(k))
        g, rtg = 0.0, []
        for r in reversed(rewards):
            g = r + gamma * g
            rtg.append(g)
        returns.extend(reversed(rtg))
    out = {"image": np.stack(images), "action": np.array(actions, np.int64), "ret": np.array(returns, np.float32)}
    if captions:
        out["caption"] = np.stack(captions).astype(np.float32)
    return out


def retrain_bc(trajs: Sequence[Trajectory], base_model: str | Path, out: str | Path, *, epochs: int = 10,
               seed: int = 0, progress: bool = False) -> Path:
    """Behaviour-clone a fresh PPO policy (same configuration as ``base_model``) on ``trajs`` (the union of
    the original demonstrations and the StaR+ trajectories); saves ``out/model.zip`` and returns its path."""
    import json

    import gymnasium as gym
    from stable_baselines3 import PPO

    import hlmat_env  # noqa: F401
    from agents.ppo.agent import resolve_model
    from agents.ppo.bc import behaviour_clone
    from agents.ppo.policy import SpatialPolicy
    from agents.ppo.train import PPOConfig, save_model
    from hlmat_env.wrappers import sb3_wrap

    cfg = PPOConfig(**json.loads(resolve_model(base_model).with_suffix(".json").read_text()))
    demos = bc_demos_from_trajectories(trajs, cfg.__dict__, cfg.gamma)
    env = sb3_wrap(gym.make("HLMATEnv-v0", dataset=trajs[0].dataset, max_clicks=cfg.max_clicks),
                   **cfg.wrapper_kwargs())
    model = PPO(SpatialPolicy, env, seed=seed, device="cpu", verbose=0,
                policy_kwargs={"features_extractor_kwargs": {"grid": cfg.grid, "finish": cfg.finish}})
    history = behaviour_clone(model.policy, demos, epochs=epochs, seed=seed, progress=progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bc_log.json").write_text(json.dumps(history, indent=1) + "\n")
    env.close()
    return save_model(model, out / "model", cfg)
