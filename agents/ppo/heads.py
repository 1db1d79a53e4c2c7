"""PPO with the PRM as a learned value head: one network, three heads on a shared trunk.

:class:`~agents.ppo.grounded.GroundedClickNet` is the shared trunk (the PRM's grounding pass plus the head's
convolutions). Its three heads:

1. the click policy (positive and negative click logits over the grid, and the finish logit);
2. PPO's value (``value`` features, then SB3's critic MLP and ``value_net``);
3. the PRM's IoU estimate of the current mask (:meth:`agents.prm.model.PRMNet.iou`, made trainable by
   ``prm_head=True``), which also feeds the finish logit and the value features.

:class:`PRMCriticPPO` trains heads 1 and 2 with PPO's clipped loss and, after every PPO update, head 3 with an
auxiliary IoU regression (mean squared error between the estimate and the state's IoU) on the same rollout,
through the same optimiser: an auxiliary phase, as Phasic Policy Gradient does for its value. The label is
the IoU the env has paid for so far: an episode starts from an empty mask (IoU 0) and each reward is the IoU
change, so a state's IoU is the sum of its episode's earlier rewards (:func:`rollout_iou`). Nothing reads the
target: the labels come from the env's own reward. The estimate stays what ``--stop prm``-style code
reads (:func:`prm_estimate`).

With ``critic="separate"`` (:func:`policy_kwargs_for`) the value reads its own copy of the trunk (SB3's
``share_features_extractor=False``): the comparison the design asks for.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.preprocessing import preprocess_obs
from torch.nn import functional as F

CRITICS = ("shared", "separate")


def rollout_iou(rewards: np.ndarray, episode_starts: np.ndarray, carry: np.ndarray | None = None,
                start_iou: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The IoU of every observation of a rollout, from the env's rewards (IoU changes).

    Args:
        rewards, episode_starts: float ``(T, E)`` as SB3's rollout buffer holds them (``episode_starts[t]``: the
            observation ``t`` is the first of an episode).
        carry: ``(E,)`` the IoU of each env's first observation when it continues an episode of the previous
            rollout (None: zeros).
        start_iou: the IoU of an episode's first state (0 for the empty start).

    Returns:
        ``(labels (T, E), carry (E,))``: the IoU of each observation and of the state after the last step (the
        next rollout's carry). A final reward that SB3 bootstrapped at a time limit only ever reaches the state
        after an episode's end, which the next start resets.
    """
    rewards = np.asarray(rewards, np.float64)
    cur = np.zeros(rewards.shape[1]) if carry is None else np.asarray(carry, np.float64).copy()
    out = np.empty_like(rewards)
    for t in range(len(rewards)):
        cur = np.where(np.asarray(episode_starts[t]) > 0, start_iou, cur)
        out[t] = cur
        cur = cur + rewards[t]
    return out.astype(np.float32), cur


def prm_estimate(policy: Any, obs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The PRM head's IoU estimate ``(N,)`` of SB3-preprocessed observations ``obs`` (the policy's features
    extractor, a :class:`~agents.ppo.grounded.GroundedClickNet`)."""
    return policy.features_extractor.ground(obs)[1]


def prm_loss(policy: Any, obs: dict[str, torch.Tensor], iou: torch.Tensor) -> torch.Tensor:
    """The PRM head's loss: mean squared error of :func:`prm_estimate` against the states' IoU ``(N,)``."""
    return F.mse_loss(prm_estimate(policy, obs), iou.float())


def policy_kwargs_for(base: dict[str, Any], critic: str = "shared", prm_head: bool = True) -> dict[str, Any]:
    """SB3 ``policy_kwargs`` of a grounded policy (``base``: :meth:`agents.ppo.train.PPOConfig.policy_kwargs`)
    with the PRM head trainable (``prm_head``) and the critic on the shared trunk or on its own copy."""
    if critic not in CRITICS:
        raise ValueError(f"critic must be one of {CRITICS}, got {critic!r}")
    out = {**base, "features_extractor_kwargs": {**base.get("features_extractor_kwargs", {}), "prm_head": prm_head}}
    if critic == "separate":
        out["share_features_extractor"] = False
    return out


def load_weights(policy: Any, state: dict[str, torch.Tensor]) -> None:
    """Load a policy ``state`` dict into ``policy`` across critic layouts: the weights of one shared features
    extractor start both the actor's and the critic's copies of a separate critic (and the reverse takes the
    actor's). Raises ``RuntimeError`` when a weight of ``policy`` is left without a value."""
    own = policy.state_dict()
    mapped = {}
    for key in own:
        src = key
        if key not in state:
            for a in ("pi_features_extractor.", "vf_features_extractor."):
                if key.startswith(a):
                    src = "features_extractor." + key[len(a):]
            if key.startswith("features_extractor.") and src not in state:
                src = "pi_features_extractor." + key[len("features_extractor."):]
        if src not in state:
            raise RuntimeError(f"load_weights: no value for {key}")
        mapped[key] = state[src]
    policy.load_state_dict(mapped)


class PRMCriticPPO(PPO):
    """SB3 PPO plus the PRM head's auxiliary IoU regression after each update (see the module docstring).

    Args:
        prm_coef: weight of the PRM loss (0: plain PPO).
        prm_epochs: passes over the rollout in the auxiliary phase.
        start_iou: the IoU of an episode's first state (0: the empty start of ``HLMATEnv-v0``).
        args, kwargs: as for :class:`stable_baselines3.PPO`.

    A saved model loads with plain ``PPO.load`` (the acting code needs nothing of this class).
    """

    def __init__(self, *args: Any, prm_coef: float = 1.0, prm_epochs: int = 1, start_iou: float = 0.0,
                 **kwargs: Any):
        self.prm_coef, self.prm_epochs, self.start_iou = float(prm_coef), int(prm_epochs), float(start_iou)
        self._iou_carry: np.ndarray | None = None
        self.iou_labels: np.ndarray | None = None
        super().__init__(*args, **kwargs)

    def collect_rollouts(self, env, callback, rollout_buffer, n_rollout_steps: int) -> bool:
        """SB3's rollout collection, then the IoU label of every stored observation (:func:`rollout_iou`)."""
        ok = super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)
        if ok:
            self.iou_labels, self._iou_carry = rollout_iou(rollout_buffer.rewards, rollout_buffer.episode_starts,
                                                           self._iou_carry, self.start_iou)
        return ok

    def train(self) -> None:
        """PPO's update, then the auxiliary PRM phase (when ``prm_coef > 0``), with a frozen trunk's scene pass
        computed once per rollout (:class:`SceneCache`) instead of once per minibatch and epoch."""
        with SceneCache(self):
            super().train()
            if self.prm_coef > 0 and self.iou_labels is not None:
                self._train_prm()

    def _train_prm(self) -> None:
        buf = self.rollout_buffer
        # after PPO's update the buffer's arrays are flattened env-major (RolloutBuffer.swap_and_flatten)
        labels = torch.as_tensor(self.iou_labels.swapaxes(0, 1).reshape(-1))
        obs = buf.observations
        n = len(labels)
        self.policy.set_training_mode(True)
        losses, errors = [], []
        for _ in range(self.prm_epochs):
            for idx in np.array_split(np.random.permutation(n), max(1, n // self.batch_size)):
                batch = {k: torch.as_tensor(v[idx]) for k, v in obs.items()}
                SceneCache.select(self, idx)
                pre = preprocess_obs(batch, self.observation_space, normalize_images=self.policy.normalize_images)
                est = prm_estimate(self.policy, pre)
                loss = F.mse_loss(est, labels[idx])
                self.policy.optimizer.zero_grad()
                (self.prm_coef * loss).backward()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
                losses.append(loss.item())
                errors.append((est.detach() - labels[idx]).abs().mean().item())
        self.policy.set_training_mode(False)
        self.logger.record("train/prm_loss", float(np.mean(losses)))
        self.logger.record("train/prm_abs_error", float(np.mean(errors)))


class SceneCache:
    """Context manager: during ``model``'s update, every frozen :class:`~agents.ppo.grounded.GroundedClickNet`
    of its policy reads the trunk's scene pass (the grounding U-Net, which neither PPO nor the PRM loss trains
    when the trunk is frozen) from one pass over the whole rollout, indexed by the rows of each minibatch
    (recorded where the rollout buffer cuts them). The same values as a pass per minibatch, several times cheaper
    per update. Extractors with ``train_trunk`` or more than one flip are left alone."""

    def __init__(self, model: Any, batch_size: int = 256):
        self.model, self.batch_size = model, batch_size
        policy = model.policy
        fes = [policy.features_extractor] + ([] if policy.share_features_extractor else [policy.vf_features_extractor])
        self.fes = [fe for fe in fes if hasattr(fe, "ground") and not fe.train_trunk and fe.flips == 1]

    @staticmethod
    def select(model: Any, rows: np.ndarray) -> None:
        """Point the cached extractors of ``model`` at the rollout rows of the next minibatch."""
        policy = model.policy
        for fe in {id(m): m for m in (policy.features_extractor, getattr(policy, "vf_features_extractor", None))
                   if m is not None}.values():
            if getattr(fe, "scene_cache", None) is not None:
                fe.scene_cache.rows = np.asarray(rows)

    def __enter__(self) -> "SceneCache":
        buf = self.model.rollout_buffer
        if not self.fes or not buf.full:
            return self
        obs = {k: v if buf.generator_ready else buf.swap_and_flatten(v) for k, v in buf.observations.items()}
        for fe in self.fes:
            codes = []
            with torch.no_grad():
                for s in range(0, len(obs["image"]), self.batch_size):
                    batch = {k: torch.as_tensor(v[s:s + self.batch_size]) for k, v in obs.items()}
                    pre = preprocess_obs(batch, self.model.observation_space,
                                         normalize_images=self.model.policy.normalize_images)
                    rgb = F.interpolate(pre["image"][:, :3], size=fe.trunk.config.size, mode="area") \
                        if pre["image"].shape[-1] != fe.trunk.config.size else pre["image"][:, :3]
                    codes.append(fe.trunk.scene(rgb * 255.0, pre["caption"]))
            fe.scene_cache = _Cache(*(torch.cat(parts) for parts in zip(*codes)))
        original = buf._get_samples
        model = self.model

        def get_samples(batch_inds, env=None):
            SceneCache.select(model, batch_inds)
            return original(batch_inds, env)

        buf._get_samples = get_samples
        self._restore = lambda: buf.__dict__.pop("_get_samples", None)
        return self

    def __exit__(self, *exc: Any) -> None:
        for fe in self.fes:
            fe.scene_cache = None
        if hasattr(self, "_restore"):
            self._restore()


class _Cache:
    """A rollout's scene codes (:class:`agents.prm.model.SceneCode` fields) and the rows of the current minibatch."""

    def __init__(self, logits: torch.Tensor, embed: torch.Tensor, pixels: torch.Tensor):
        from agents.prm.model import SceneCode

        self.code, self.rows = SceneCode(logits, embed, pixels), None

    def take(self, rows: Any):
        """The cached codes at ``rows`` (indices into the flattened rollout)."""
        if rows is None:
            raise RuntimeError("scene cache: no minibatch rows selected")
        return self.code.take(torch.as_tensor(rows))


class PolicyPRM:
    """The PRM head of a grounded PPO policy as a process reward model (the
    :class:`agents.prm.scorer.PRM` interface: ``score`` / ``score_batch``), so ``--stop prm`` and tree search
    can read the policy's own IoU estimate (``hlmat benchmark --agent ppo:DIR --stop prm --prm policy``).
    An empty mask scores 0, as for :class:`agents.prm.scorer.LearnedPRM`.

    Args:
        agent: a :class:`agents.ppo.PPOAgent` whose policy has a PRM trunk
            (:class:`~agents.ppo.grounded.GroundedClickNet`); its ``flips`` setting applies.
    """

    def __init__(self, agent: Any):
        fe = getattr(getattr(getattr(agent, "model", None), "policy", None), "features_extractor", None)
        if not hasattr(fe, "ground"):
            raise ValueError("the 'policy' PRM needs a ppo agent whose policy has a PRM trunk (ppo:grounded)")
        self.agent = agent

    def score(self, image: np.ndarray, mask: np.ndarray, caption: str = "") -> float:
        """IoU estimate in [0, 1] of bool HxW ``mask`` on uint8 HxWx3 ``image`` (see the class docstring)."""
        return self.score_batch(image, [mask], caption)[0]

    def score_batch(self, image: np.ndarray, masks: Any, caption: str = "") -> list[float]:
        """Estimates of several masks of one image, in order."""
        from hlmat_env.captions import caption_code
        from hlmat_env.wrappers import stack_image_mask

        cfg, policy = self.agent.cfg, self.agent.model.policy
        shape = np.asarray(image).shape[:2]
        clicks = () if cfg["clicks"] else None  # click planes do not reach the estimate
        images = np.stack([stack_image_mask(image, np.asarray(m, bool).astype(np.uint8) * 255, cfg["size"], clicks,
                                            shape) for m in masks])
        code = caption_code(caption, cfg.get("caption_code", "multihot"))
        obs = {"image": torch.as_tensor(images), "caption": torch.as_tensor(np.stack([code] * len(masks)))}
        with torch.no_grad():
            pre = preprocess_obs(obs, policy.observation_space, normalize_images=policy.normalize_images)
            est = prm_estimate(policy, pre).double().numpy()
        return [0.0 if not np.any(m) else float(e) for m, e in zip(masks, est)]
