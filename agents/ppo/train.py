"""PPO training: subprocess vector envs (one torch thread each), BC warm start, checkpoints, TensorBoard, resume.

Output folder layout: ``model.zip`` + ``model.json`` (final policy and its wrapper settings: what ``ppo:PATH``
loads), ``bc_model.zip`` + ``bc_model.json`` (the BC-only policy), ``checkpoints/``, ``tb/`` (TensorBoard),
``progress.csv`` (SB3's log, with ``time/cpu_s``: CPU seconds of the training process and its env workers,
Linux),
``bc_log.json`` and ``training_curve.png``.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class PPOConfig:
    """Settings of the wrapped env and of PPO (saved as ``model.json`` beside each model)."""

    env_id: str = "HLMATEnv-v0"  # a registered id, e.g. a rung of hlmat_env.variants
    size: int = 64
    grid: int = 32
    finish: bool = True
    clicks: bool = True
    caption: bool = True
    width: int = 32
    net: str = "clicknet"  # plain policies: "clicknet" (agents.ppo.policy) or "local" (agents.ppo.local)
    max_clicks: int = 5
    n_envs: int = 2
    n_steps: int = 128
    batch_size: int = 64
    n_epochs: int = 4
    learning_rate: float = 1e-4
    clip_range: float = 0.1
    target_kl: float = 0.02
    ent_coef: float = 0.0
    gamma: float = 0.9
    gae_lambda: float = 0.9
    seed: int = 0
    caption_code: str = "multihot"
    trunk: str | None = None
    train_trunk: bool = False
    place: str = "centre"  # PPOAgent's acting rules (agents.ppo.agent), saved with the model
    positive_threshold: float = 0.0
    trunk_flips: int | None = None  # flips of the trunk's map when the saved policy acts and in BC with a frozen
    # trunk (its maps are computed once); PPO's updates use one pass
    critic: str = "shared"  # grounded policies: the value on the shared trunk or on its own copy (agents.ppo.heads)
    prm_coef: float = 0.0  # grounded policies: weight of the PRM head's IoU regression after each update (0: off)
    prm_epochs: int = 1

    def __post_init__(self) -> None:
        if self.trunk is not None:
            self.caption = True
            self.caption_code = "hashed"  # what the PRM's trunk reads

    def wrapper_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`hlmat_env.wrappers.sb3_wrap` that rebuild the training observation."""
        return {"size": self.size, "grid": self.grid, "finish": self.finish, "clicks": self.clicks,
                "caption": self.caption, "caption_code": self.caption_code}

    def policy_kwargs(self, prm_config: dict | None = None) -> dict[str, Any]:
        """SB3 ``policy_kwargs`` of :class:`agents.ppo.policy.SpatialPolicy`: the plain
        :class:`~agents.ppo.policy.ClickNet`, or with ``trunk`` (a PRM checkpoint) the
        :class:`~agents.ppo.grounded.GroundedClickNet` of that PRM's architecture (``prm_config``: that
        architecture as a dict, when it comes from a saved policy rather than the checkpoint), with the
        ``critic`` layout and a trainable PRM head when ``prm_coef > 0`` (:func:`agents.ppo.heads.policy_kwargs_for`)."""
        if self.net not in ("clicknet", "local"):
            raise ValueError(f"net must be 'clicknet' or 'local', got {self.net!r}")
        if self.trunk is None:
            if self.critic != "shared" or self.prm_coef > 0:
                raise ValueError("critic='separate' and prm_coef need a grounded policy (a PRM trunk)")
            if self.net == "local":
                from agents.ppo.local import LocalClickNet

                return {"features_extractor_class": LocalClickNet, "features_extractor_kwargs": {"width": self.width}}
            return {"features_extractor_kwargs": {"width": self.width}}
        if self.net != "clicknet":
            raise ValueError("a grounded policy (trunk) has its own network: net must stay 'clicknet'")
        from agents.ppo.grounded import GroundedClickNet
        from agents.ppo.heads import policy_kwargs_for

        if prm_config is None:
            from agents.prm.train import load_prm_net

            prm_config = load_prm_net(self.trunk).config.to_dict()
        base = {"features_extractor_class": GroundedClickNet,
                "features_extractor_kwargs": {"width": self.width, "prm_config": prm_config,
                                              "train_trunk": self.train_trunk}}
        if self.critic == "shared" and self.prm_coef <= 0:
            return base
        return policy_kwargs_for(base, self.critic, prm_head=self.prm_coef > 0)


def demo_settings(dataset: Any, segmenter: Any, cfg: PPOConfig) -> dict[str, Any]:
    """What the recorded demonstration states depend on (checked when a demos folder is reused)."""
    from hlmat_env.segmenters import segmenter_name, segmenter_version

    settings = {"dataset": dataset if isinstance(dataset, str) or dataset is None else type(dataset).__name__,
                "segmenter": segmenter_name(segmenter),
                "segmenter_version": segmenter_version(segmenter), "wrapper": cfg.wrapper_kwargs(),
                "max_clicks": cfg.max_clicks}
    if cfg.env_id != "HLMATEnv-v0":  # (only then, so that earlier demos folders still match)
        settings["env_id"] = cfg.env_id
    return settings


def make_env(dataset: Any, segmenter: Any, cfg: PPOConfig, rank: int = 0):
    """One wrapped, monitored env of ``cfg.env_id`` (the factory of every vector-env worker; sets one torch
    thread); ``dataset`` None keeps the env id's registered dataset."""
    import gymnasium as gym
    import torch
    from stable_baselines3.common.monitor import Monitor

    import hlmat_env  # noqa: F401
    from hlmat_env.wrappers import sb3_wrap

    torch.set_num_threads(1)
    kwargs = {} if dataset is None else {"dataset": dataset}
    env = gym.make(cfg.env_id, segmenter=segmenter, max_clicks=cfg.max_clicks, **kwargs)
    env = Monitor(sb3_wrap(env, **cfg.wrapper_kwargs()))
    env.reset(seed=cfg.seed + 1000 * rank)
    return env


def save_model(model: Any, path: str | Path, cfg: PPOConfig) -> Path:
    """Save ``model`` to ``path`` (``.zip``) and ``cfg`` beside it (``.json``)."""
    path = Path(path).with_suffix(".zip")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    path.with_suffix(".json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    return path


def train(dataset: Any = "synthetic:train", segmenter: Any = "default", out: str | Path = "runs/ppo", *,
          timesteps: int = 20_000, bc_demos: str | Path | None = None, bc_episodes: int = 400,
          bc_clicks: int | None = 4, bc_first_clicks: int = 0, bc_epochs: int = 8, bc_lr: float = 3e-3,
          bc_threads: int = 1, init_from: str | Path | None = None, resume: bool = False, subproc: bool = True,
          checkpoint_every: int = 2048, progress: bool = True, **config: Any) -> Path:
    """Train a PPO click policy and save ``out/model.zip``; returns its path.

    Args:
        dataset, segmenter: as for ``gym.make("HLMATEnv-v0", ...)``; dataset None: the registered one of the
            ``env_id`` setting (a rung of :data:`hlmat_env.variants.VARIANTS`).
        timesteps: PPO environment steps (0: BC only).
        bc_demos: folder of oracle demonstrations (``demos.npz``, generated there with ``bc_episodes``
            episodes of at most ``bc_clicks`` clicks if missing); None skips the warm start.
        bc_first_clicks: further demonstration episodes of which only the first state is recorded (cheap).
        bc_epochs, bc_lr: behaviour-cloning epochs and peak learning rate.
        bc_threads: torch threads for behaviour cloning (and a frozen trunk's maps): the env workers sit idle
            then, and unlike PPO's small batches BC's convolutions do use a second core. Everything else runs with one thread per process.
        init_from: a saved model (``.zip`` or training folder) whose policy weights start this run (staged
            training: e.g. more behaviour cloning on new demonstrations, then PPO); its settings must match.
        resume: continue from the newest checkpoint in ``out/checkpoints`` (or ``out/model.zip``).
        subproc: run the ``n_envs`` workers as subprocesses (else in-process).
        config: :class:`PPOConfig` fields (``env_id``, ``grid``, ``size``, ``learning_rate``...).
    """
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import CheckpointCallback
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from agents.ppo.bc import behaviour_clone, load_or_generate
    from agents.ppo.curve import plot_training_curve
    from agents.ppo.heads import PRMCriticPPO, load_weights
    from agents.ppo.policy import SpatialPolicy

    torch.set_num_threads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "model.json"
    if resume and cfg_path.exists():
        cfg = PPOConfig(**{**json.loads(cfg_path.read_text()), **config})
    else:
        cfg = PPOConfig(**config)
    fns = [partial(make_env, dataset, segmenter, cfg, i) for i in range(cfg.n_envs)]
    venv = SubprocVecEnv(fns, start_method="forkserver") if subproc and cfg.n_envs > 1 else DummyVecEnv(fns)
    start = _resume_point(out) if resume else None
    if start is not None:
        log.info("resuming from %s", start)
        model = PRMCriticPPO.load(start, env=venv, device="cpu")
    else:
        init = None
        if init_from is not None:
            from agents.ppo.agent import resolve_model

            init = PPO.load(resolve_model(init_from), device="cpu")
        # a saved grounded policy carries its trunk's architecture and weights: its PRM file is not needed
        init_prm = (init.policy_kwargs.get("features_extractor_kwargs", {}).get("prm_config")
                    if init is not None else None)
        model = PRMCriticPPO(SpatialPolicy, venv, n_steps=cfg.n_steps, batch_size=cfg.batch_size,
                             n_epochs=cfg.n_epochs, learning_rate=cfg.learning_rate, clip_range=cfg.clip_range,
                             target_kl=cfg.target_kl, ent_coef=cfg.ent_coef, gamma=cfg.gamma,
                             gae_lambda=cfg.gae_lambda, seed=cfg.seed, policy_kwargs=cfg.policy_kwargs(init_prm),
                             prm_coef=cfg.prm_coef, prm_epochs=cfg.prm_epochs, device="cpu", verbose=0)
        if cfg.trunk is not None and init is None:
            from agents.ppo.grounded import load_trunk

            load_trunk(model.policy, cfg.trunk)
        if init is not None:
            load_weights(model.policy, init.policy.state_dict())
        if bc_demos is not None:
            demos = load_or_generate(bc_demos, partial(make_env, dataset, segmenter, cfg), bc_episodes,
                                     workers=cfg.n_envs, first_click_episodes=bc_first_clicks,
                                     clicks_per_episode=bc_clicks, gamma=cfg.gamma,
                                     seed=cfg.seed, progress=progress,
                                     settings=demo_settings(dataset, segmenter, cfg))
            torch.set_num_threads(max(1, bc_threads))
            try:
                history = behaviour_clone(model.policy, demos, epochs=bc_epochs, lr=bc_lr, seed=cfg.seed,
                                          trunk_flips=cfg.trunk_flips, progress=progress)
            finally:
                torch.set_num_threads(1)
            (out / "bc_log.json").write_text(json.dumps(history, indent=1) + "\n")
            save_model(model, out / "bc_model", cfg)
    log_dir = out if start is None else out / f"resume_{model.num_timesteps}"  # keeps earlier progress.csv
    model.set_logger(configure(str(log_dir), ["csv", "tensorboard"]))
    save_model(model, out / "model", cfg)  # also what --resume starts from before any checkpoint
    if timesteps > 0:
        ckpt = CheckpointCallback(save_freq=max(1, checkpoint_every // cfg.n_envs), save_path=str(out / "checkpoints"),
                                  name_prefix="ppo")
        model.learn(total_timesteps=timesteps, callback=[ckpt, _cpu_logger()], reset_num_timesteps=start is None,
                    progress_bar=False)
    venv.close()
    path = save_model(model, out / "model", cfg)
    plot_training_curve(out)
    return path


def _cpu_logger():
    """An SB3 callback that logs :func:`agents.tools.env_speed.cpu_seconds` of this process and its subprocess
    env workers as ``time/cpu_s`` with every rollout (so progress.csv and TensorBoard carry CPU time against env
    steps): the process so far, behaviour cloning included (a resumed run counts from its own start)."""
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.tools.env_speed import cpu_seconds

    class CPUTimeLogger(BaseCallback):
        def _on_rollout_end(self) -> None:
            pids = [p.pid for p in getattr(self.training_env, "processes", [])]  # SubprocVecEnv workers
            cpu = cpu_seconds(pids)
            if cpu is not None:  # (None where /proc cannot be read)
                self.logger.record("time/cpu_s", round(cpu, 1))

        def _on_step(self) -> bool:
            return True

    return CPUTimeLogger()


def _resume_point(out: Path) -> Path | None:
    """The newest checkpoint (by step count) in ``out/checkpoints``, else ``out/model.zip``, else None."""
    ckpts = sorted((out / "checkpoints").glob("ppo_*_steps.zip"), key=lambda p: int(p.stem.split("_")[-2]))
    if ckpts:
        return ckpts[-1]
    return out / "model.zip" if (out / "model.zip").exists() else None
