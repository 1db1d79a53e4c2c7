"""StaR+: improve a policy with its own rollouts, corrected by the robot user (SegAgent; docs/method.md).

:func:`star_trajectory` rolls the policy out on one training sample. Each policy click that strictly raises the
IoU is kept; any other decision (a click that lowers or keeps the IoU, finish, an invalid output) is undone
with ``env.set_state`` and replaced by the robot user's click (``env.expert_click()``). When the robot user's
own click does not raise the IoU either, the trajectory ends (SegAgent's recording rule), as it does at
IoU >= ``tau_stop`` or after ``max_clicks`` clicks. Every kept step therefore raises the IoU. The result is a
:class:`hlmat_env.trajectories.Trajectory` from the empty start (episode id ``SAMPLE#star``), written in the
demonstrations' JSONL format.

``labels="robot"`` is an ablation of StaR+'s one choice: the same execution, but *every* visited state is
labelled with the robot user's click (DAgger's labelling on StaR+'s states: a kept policy click carries the
robot user's as its ``label``; episode id ``SAMPLE#dagger``). Against StaR+ it tells whether the kept policy
clicks help as labels.

Retraining on the union with the original demonstrations:

* PPO/BC policy: :func:`bc_demos_from_trajectories` turns the union into the behaviour-cloning arrays of
  :func:`agents.ppo.bc.generate_demos` (soft grid labels, target maps, finish rows) and :func:`retrain`
  behaviour-clones either a fresh policy (SegAgent's "retrain from the base model") or, in the practical
  variant, fine-tunes the rolled-out policy itself at a lower learning rate;
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
from agents.view import view_for
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
        """Fraction of the policy's clicks that were kept (NaN before any click)."""
        n = self.kept + self.replaced
        return self.kept / n if n else float("nan")


def star_trajectory(env: Any, agent: Agent, index: int, *, seed: int | None = None, max_clicks: int = 20,
                    tau_stop: float = 0.98, dataset_spec: str = "", segmenter_name: str = "",
                    stats: StarStats | None = None, labels: str = "policy") -> Trajectory:
    """One corrected rollout of ``agent`` on sample ``index`` of ``env`` (a ``gym.make`` env) from empty.

    ``labels="policy"`` (StaR+): each kept policy click is its own label. ``labels="robot"`` (DAgger-style, the
    same execution): each kept policy click carries the robot user's click from the state before it as its
    ``label`` (unless the robot user's click would not raise the IoU there); only the labels differ.
    """
    if labels not in ("policy", "robot"):
        raise ValueError(f"labels must be 'policy' or 'robot', got {labels!r}")
    obs, info = env.reset(seed=seed, options={"index": index})
    u = env.unwrapped
    view = view_for(agent, env)  # the policy acts through its read-only view; the corrector below uses ``u``
    agent.reset(view)
    sample = u.dataset[index]  # the corrector is the robot user: it may see the target
    gt = sample.target > 0
    iou = start_iou = float(info["iou"])
    steps: list[Step] = []
    stats = stats if stats is not None else StarStats()
    while len(steps) < max_clicks and iou < tau_stop:
        decision = agent.act(obs, view)
        snapshot = u.get_state()
        robot = u.expert_click() if labels == "robot" else None  # from the state the policy acts in
        kept = False
        if decision.valid and int(decision.action[0]) != ActionKind.FINISH:
            new_obs, _, _, truncated, info = env.step(decision.action)
            kept = info["iou"] > iou
            if not kept:
                u.set_state(snapshot)
        if not kept:
            click = robot if robot is not None else u.expert_click()
            if click is None:
                break
            new_obs, _, _, truncated, info = u.click(click)
            if info["iou"] <= iou:
                break
        stats.kept += kept
        stats.replaced += not kept
        label = None
        if kept and robot is not None and robot != u.clicks[-1] and _raises_iou(u, snapshot, robot, iou):
            label = robot  # (where the robot user's click would not raise the IoU, the policy's is the label)
        obs, iou = new_obs, float(info["iou"])
        c = u.clicks[-1]
        steps.append(Step(int(c.x), int(c.y), bool(c.positive), iou, encode_rle(u.mask), label))
        if truncated:
            break
    stats.episodes += 1
    stats.start_ious.append(start_iou)
    stats.final_ious.append(iou)
    h, w = gt.shape
    return Trajectory(sample_id=sample.sample_id, height=h, width=w, target=encode_rle(gt), clicks=steps,
                      caption=sample.caption, image=sample.image_ref, dataset=dataset_spec, index=int(index),
                      segmenter=segmenter_name, start="empty", start_iou=start_iou, seed=seed,
                      episode_id=f"{sample.sample_id}#star" if labels == "policy" else f"{sample.sample_id}#dagger")


def _raises_iou(u: Any, snapshot: Any, click: Any, iou: float) -> bool:
    """Whether ``click`` from ``snapshot`` raises the IoU above ``iou``; the env's state is left as it was."""
    after = u.get_state()
    u.set_state(snapshot)
    raised = u.click(click)[-1]["iou"] > iou
    u.set_state(after)
    return bool(raised)


def star_relabel(agent: Agent, dataset: Any = "synthetic:train", indices: Iterable[int] | None = None, *,
                 segmenter: Any = "default", limit: int | None = None, max_clicks: int = 20, seed: int = 0,
                 labels: str = "policy", progress: bool = False) -> tuple[list[Trajectory], StarStats]:
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
                                     segmenter_name=seg_name, stats=stats, labels=labels))
    env.close()
    return trajs, stats


class _Replay:
    """Segmenter stand-in for replaying recorded masks through the env's observation: it never predicts."""

    name = "replay"

    def set_image(self, image: np.ndarray) -> None:
        pass

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the replay segmenter only serves reset(initial_mask=...) observations")


def bc_demos_from_trajectories(trajs: Sequence[Trajectory], cfg: dict, gamma: float = 0.9, *, max_clicks: int,
                               tau_stop: float = 0.98) -> dict[str, np.ndarray]:
    """The PPO policy's behaviour-cloning arrays in :func:`agents.ppo.bc.generate_demos`' format.

    One row per click: the observation the policy saw before it (rebuilt by the env itself, as
    :class:`agents.ppo.agent.PPOAgent` sees it), the click snapped to the grid (``action``),
    the soft label over the grid (:func:`agents.ppo.bc.soft_target` for the click's sign; the sample's target is
    a training label here), the target map and the return-to-go of the IoU gains. When ``cfg["finish"]``, a
    trajectory that stopped before ``max_clicks`` clicks below ``tau_stop`` stopped because no click raised
    the IoU (the recording rule of :func:`star_trajectory` and :func:`hlmat_env.trajectories.record_trajectory`),
    so its final state gets one more row labelled *finish* (reward 0).

    Args:
        trajs: trajectories whose ``dataset`` spec and ``index`` reload the image and the target.
        cfg: the policy's :class:`agents.ppo.train.PPOConfig` as a dict (``size``, ``grid``, ``finish``,
            ``clicks``, ``caption``).
        gamma: discount of the return-to-go.
        max_clicks: the smallest click budget the trajectories were recorded with (a trajectory that used its
            whole budget gets no finish row; a budget below this one would give wrong finish rows).
        tau_stop: the IoU at which the recordings stopped.

    Returns:
        ``image`` uint8 ``(N, C, S, S)``, ``action`` int64 ``(N,)``, ``target`` float32 ``(N, A)`` (rows sum
        to 1), ``ret`` float32 ``(N,)``, ``target_map`` uint8 ``(N, S, S)`` and, with a caption, ``caption``
        float32 ``(N, D)``.

    Raises:
        ValueError: a trajectory names no dataset/index, or its sample's size differs from the trajectory's.
    """
    import gymnasium as gym

    import hlmat_env  # noqa: F401
    from agents.ppo.bc import returns_to_go, soft_target
    from hlmat_env.masks import coverage_map
    from hlmat_env.captions import caption_code
    from hlmat_env.wrappers import click_to_cell, stack_image_mask

    grid, finish, size = int(cfg["grid"]), bool(cfg["finish"]), int(cfg["size"])
    n_actions = 2 * grid**2 + int(finish)
    envs: dict[str, Any] = {}
    rows: dict[str, list] = {k: [] for k in ("image", "caption", "action", "target", "ret", "reward", "target_map")}
    for t in trajs:
        if not t.dataset or t.index < 0:
            raise ValueError(f"trajectory {t.episode_id!r} names no dataset/index: cannot reload its image")
        env = envs.setdefault(t.dataset, gym.make("HLMATEnv-v0", dataset=t.dataset, segmenter=_Replay()))
        truth = np.asarray(env.unwrapped.dataset[t.index].target)
        if truth.shape != (t.height, t.width):
            raise ValueError(f"trajectory {t.episode_id!r} is {t.height}x{t.width} but sample {t.index} of "
                             f"{t.dataset!r} is {truth.shape[0]}x{truth.shape[1]}")
        t_map = coverage_map(truth, size)
        stop = finish and len(t.clicks) < max_clicks and t.iou_before(len(t.clicks)) < tau_stop
        rewards = []
        for k in range(len(t.clicks) + int(stop)):
            mask = t.mask_before(k)
            clicks = [s.click for s in t.clicks[:k]]
            obs, _ = env.reset(options={"index": t.index, "initial_mask": mask})  # the env's own observation
            rows["image"].append(stack_image_mask(obs["image"], obs["mask"], size,
                                                  clicks if cfg["clicks"] else None, mask.shape))
            rows["caption"].append(caption_code(obs["caption"], cfg.get("caption_code", "multihot")))
            rows["target_map"].append(t_map)
            click = t.clicks[k].label_click if k < len(t.clicks) else None
            label = click_to_cell(click, grid, t.width, t.height, finish)
            rows["action"].append(label)
            rows["target"].append(soft_target(truth, mask, clicks, click, grid, n_actions, label))
            rewards.append(t.clicks[k].iou - t.iou_before(k) if click is not None else 0.0)
        rows["ret"].extend(returns_to_go(rewards, gamma))
        rows["reward"].extend(rewards)
    for env in envs.values():
        env.close()
    if not rows["action"]:
        raise ValueError("the trajectories hold no click to learn from")
    out = {"image": np.stack(rows["image"]), "action": np.array(rows["action"], np.int64),
           "target": np.stack(rows["target"]), "ret": np.array(rows["ret"], np.float32),
           "reward": np.array(rows["reward"], np.float32), "target_map": np.stack(rows["target_map"])}
    if cfg["caption"]:
        out["caption"] = np.stack(rows["caption"]).astype(np.float32)
    return out


def retrain(trajs: Sequence[Trajectory], base_model: str | Path | None, out: str | Path, *, mode: str = "bc",
            epochs: int = 10, lr: float | None = None, max_clicks: int, extra: dict[str, np.ndarray] | None = None,
            seed: int = 0, progress: bool = False) -> Path:
    """Behaviour-clone the PPO policy ``base_model`` on ``trajs`` (the union of the original demonstrations and
    the StaR+ trajectories, converted by :func:`bc_demos_from_trajectories`); saves ``out/model.zip`` (and
    ``out/bc_log.json``) and returns its path.

    Args:
        mode: ``"bc"``: a fresh policy of the same architecture and settings (SegAgent retrains from the base
            model); ``"finetune"``: continue from ``base_model``'s weights.
        epochs: behaviour-cloning epochs.
        lr: peak learning rate of the cosine schedule (default: 3e-3 for ``bc``, 3e-4 for ``finetune``).
        max_clicks: see :func:`bc_demos_from_trajectories`.
        extra: more arrays in :func:`agents.ppo.bc.generate_demos`' format (e.g. the policy's own training
            demonstrations) appended to the converted ones.
    """
    import json

    import torch
    from stable_baselines3 import PPO

    from agents.ppo.agent import resolve_model
    from agents.ppo.bc import behaviour_clone, concat_demos
    from agents.ppo.train import PPOConfig, save_model

    if mode not in ("bc", "finetune"):
        raise ValueError(f"mode must be 'bc' or 'finetune', got {mode!r}")
    path = resolve_model(base_model)
    cfg = PPOConfig(**json.loads(path.with_suffix(".json").read_text()))
    parts = [bc_demos_from_trajectories(trajs, cfg.__dict__, cfg.gamma, max_clicks=max_clicks)] if trajs else []
    parts += [extra] if extra is not None else []
    if not parts:
        raise ValueError("nothing to retrain on: no trajectories and no extra demonstrations")
    demos = concat_demos(parts)
    model = PPO.load(path, device="cpu")
    if mode == "bc":
        torch.manual_seed(seed)
        fresh = model.policy_class(model.observation_space, model.action_space, model.lr_schedule,
                                   **model.policy_kwargs)
        if hasattr(fresh.features_extractor, "trunk"):  # a grounded policy's pretrained trunk is its base
            fresh.features_extractor.trunk.load_state_dict(model.policy.features_extractor.trunk.state_dict())
        model.policy = fresh
    lr = lr if lr is not None else (3e-3 if mode == "bc" else 3e-4)
    log.info("%s on %d rows, %d epochs, lr %g", mode, len(demos["action"]), epochs, lr)
    history = behaviour_clone(model.policy, demos, epochs=epochs, lr=lr, trunk_flips=cfg.trunk_flips, seed=seed,
                              progress=progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bc_log.json").write_text(json.dumps(history, indent=1) + "\n")
    return save_model(model, out / "model", cfg)
