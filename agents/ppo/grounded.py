"""A click policy grounded on the PRM's trunk: the learned part of clicking is *where the error is*, the
grounding ("which object does the description name?") comes from a pretrained target map.

Why: grounding is what the plain :class:`agents.ppo.policy.ClickNet` fails at on this CPU budget (its first
click often lands on the wrong object), and the PRM's trunk (:class:`agents.prm.model.PRMNet`,
trained by ``hlmat train-prm`` with dense target-map labels) already finds the target far better. So
:class:`GroundedClickNet` runs that trunk on the observation's image and hashed caption code
(``caption_code="hashed"``), and a small convolutional head reads the predicted target map ``p`` next to the
current mask ``m``, the image and the click maps and writes the positive and negative click logits over the
grid. Its input planes include the *depth* of the two soft error regions, ``p(1-m)`` (missed) and ``(1-p)m``
(extra), i.e. how many erosions a pixel survives (:func:`erosion_depth`): the robot user clicks the deepest
point of the largest error, so with these planes the head starts close to "the robot user on the predicted
target" and learns from the demonstrations where to depart from it. The finish logit and the value features see the PRM's own
IoU estimate of the current mask (:meth:`PRMNet.iou`): the PRM serves as the critic's main input, the
actor-critic sharing its trunk. By default the trunk is frozen (its weights come from the PRM checkpoint and
stay as they are; behaviour cloning and PPO train the head only); ``train_trunk=True`` fine-tunes it too.
Nothing sees the target when acting.
"""
from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn
from torch.nn import functional as F

from agents.prm.model import PRMConfig, PRMNet
from agents.prm.train import flip_maps
from hlmat_env.captions import mirror_code


def erosion_depth(region: torch.Tensor, steps: int = 12) -> torch.Tensor:
    """Soft distance to the outside of ``region`` (float ``(N, 1, S, S)`` in [0, 1]): the sum of its ``steps``
    successive 3x3 min-pool erosions, the image border counting as outside (as for the robot user); divided
    by ``steps`` so it lies in [0, 1]."""
    depth, x = torch.zeros_like(region), region
    for _ in range(steps):
        depth = depth + x
        x = -F.max_pool2d(-F.pad(x, (1, 1, 1, 1), value=0.0), 3, stride=1)
    return depth / steps


class GroundedClickNet(BaseFeaturesExtractor):
    """Features ``[click logits (2 * grid**2), finish logit (0 or 1), value features (value_dim)]``, like
    :class:`agents.ppo.policy.ClickNet`.

    Args:
        observation_space: ``Dict(image=Box uint8 (C, S, S), caption=Box float32 (D,))`` with ``C`` 4 or 6
            (RGB, mask[, positive and negative clicks]) and the hashed caption code; SB3 scales the image to [0, 1].
        prm_config: the trunk's :class:`agents.prm.model.PRMConfig` as a dict (its weights are loaded by the
            caller, :func:`load_trunk`, and then saved with the policy).
        grid: click grid size; finish: whether the action space ends with a finish action.
        width: channels of the head; value_dim: size of the value features.
        train_trunk: let gradients reach the trunk (default: frozen, kept in eval mode).
        prm_head: train the trunk's IoU head (:meth:`PRMNet.iou`: its verifier and correction layers) even when
            the trunk is frozen: the third head of the actor-critic, whose estimate feeds the finish logit and
            the value features and which :class:`agents.ppo.heads.PRMCriticPPO` regresses on the env's IoU.
        flips: the target map and the PRM estimate are averaged over this many flips (1-4) of image and caption
            (test-time augmentation, as :class:`agents.prm.scorer.LearnedPRM` does; 4 costs 4 trunk passes). Not saved
            as a weight: set ``flips`` on a loaded policy (``PPOAgent(..., trunk_flips=4)``).

    Attributes:
        last_target_map: the target map ``(N, 1, T, T)`` of the latest forward pass (no gradient); ``PPOAgent``
            reads it to place a click inside its cell without a second trunk pass.
    """

    caption_code = "hashed"

    def __init__(self, observation_space: gym.spaces.Dict, prm_config: dict | None = None, grid: int = 32,
                 finish: bool = True, width: int = 32, value_dim: int = 64, train_trunk: bool = False,
                 flips: int = 1, prm_head: bool = False):
        self.grid, self.finish, self.value_dim = int(grid), bool(finish), int(value_dim)
        self.n_logits = 2 * self.grid**2 + int(self.finish)
        super().__init__(observation_space, self.n_logits + self.value_dim)
        c, size = observation_space["image"].shape[0], observation_space["image"].shape[-1]
        if "caption" not in observation_space.spaces:
            raise ValueError("GroundedClickNet needs the caption (sb3_wrap(..., caption_code='hashed'))")
        self.trunk = PRMNet(PRMConfig(**(prm_config or {})))
        if observation_space["caption"].shape[0] != self.trunk.config.caption_len:
            raise ValueError(f"caption code of length {observation_space['caption'].shape[0]} does not fit the "
                             f"trunk's {self.trunk.config.caption_len}: wrap with caption_code='hashed'")
        self.train_trunk, self.flips, self.prm_head = bool(train_trunk), flips, bool(prm_head)
        self.trunk.requires_grad_(self.train_trunk)
        if self.prm_head:
            for part in prm_head_modules(self.trunk):
                part.requires_grad_(True)
        self.size, self.clicks = int(size), c >= 6
        w = int(width)
        planes = 11 + 2 * self.clicks  # RGB, p, m, p(1-m), (1-p)m, their depths, x, y[, clicks]
        self.body = nn.Sequential(
            nn.Conv2d(planes, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(w, w, 3, stride=2, padding=1), nn.ReLU(),      # S/2
            nn.Conv2d(w, w, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=4, dilation=4), nn.ReLU())
        self.head = nn.Conv2d(w, 2, 1)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        n_stats = 6
        self.finish_head = nn.Linear(n_stats, 1) if self.finish else None
        self.value = nn.Linear(w + n_stats, self.value_dim)

    @property
    def flips(self) -> int:
        """Flips (1-4) the target map and the PRM estimate are averaged over."""
        return self._flips

    @flips.setter
    def flips(self, k: int) -> None:
        if not 1 <= int(k) <= 4:
            raise ValueError(f"flips must be 1-4, got {k}")
        self._flips = int(k)

    def train(self, mode: bool = True) -> "GroundedClickNet":
        """Switch training mode on or off, keeping the frozen parts in eval mode (``torch.nn.Module.train``)."""
        super().train(mode)
        if not self.train_trunk:
            self.trunk.eval()  # a frozen trunk keeps its BatchNorm statistics
        return self

    def ground(self, observations: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(p, est, logits)``: the target map in [0, 1] ``(N, 1, T, T)`` (mean over ``flips``), the PRM's IoU
        estimate of the current mask ``(N,)`` and the unflipped pass's map logits ``(N, 1, T, T)``, at the
        trunk's size ``T``."""
        x = observations["image"]
        rgb = x[:, :3]
        if rgb.shape[-1] != self.trunk.config.size:
            rgb = F.interpolate(rgb, size=self.trunk.config.size, mode="area")
        mask = F.adaptive_avg_pool2d(x[:, 3:4], self.trunk.config.size)[:, 0]
        grad = torch.is_grad_enabled()
        probs, ests = [], []
        for f in range(self.flips):  # bit 0: left-right, bit 1: up-down (agents.prm.train.flip_maps)
            cap = observations["caption"]
            for bit, axis in ((1, "x"), (2, "y")):
                cap = mirror_code(cap, "hashed", axis) if f & bit else cap
            cache = getattr(self, "scene_cache", None)
            if cache is not None and self.flips == 1 and not self.train_trunk:
                code = cache.take(cache.rows)  # the frozen pass of these rows, computed once per rollout
                if len(code.logits) != len(rgb):
                    raise RuntimeError(f"scene cache holds {len(code.logits)} rows for a batch of {len(rgb)}")
            else:
                with torch.set_grad_enabled(self.train_trunk and grad):
                    code = self.trunk.scene(flip_maps(rgb, f) * 255.0, cap)
            probs.append(torch.sigmoid(flip_maps(code.logits, f)))
            with torch.set_grad_enabled((self.train_trunk or self.prm_head) and grad):
                ests.append(self.trunk.iou(code, flip_maps(mask, f) * 255.0))
            if f == 0:
                logits = code.logits[:, None]
        return torch.stack(probs).mean(0)[:, None], torch.stack(ests).mean(0), logits

    def maps(self, observations: dict[str, torch.Tensor],
             grounding: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(features, target_logits)``: the :meth:`forward` features and the trunk's target-map logits
        ``(N, 1, S, S)`` (behaviour cloning's auxiliary loss; it trains the trunk only when ``train_trunk``).

        ``grounding``: ``(p, est)`` of :meth:`ground` computed earlier for these observations (a frozen trunk
        gives the same every epoch, so behaviour cloning computes them once); the logits are then None."""
        x = observations["image"]
        n = len(x)
        p, est, logits = self.ground(observations) if grounding is None else (*grounding, None)
        p = p.float()
        self.last_target_map = p.detach()
        if p.shape[-1] != self.size:
            p = F.interpolate(p, size=self.size, mode="bilinear", align_corners=False)
        m = x[:, 3:4]
        ys = torch.linspace(-1, 1, self.size, device=x.device).view(1, 1, -1, 1).expand(n, 1, -1, self.size)
        xs = torch.linspace(-1, 1, self.size, device=x.device).view(1, 1, 1, -1).expand(n, 1, self.size, -1)
        missed, extra = p * (1 - m), (1 - p) * m
        planes = [x[:, :3], p, m, missed, extra, erosion_depth(missed), erosion_depth(extra), xs, ys]
        planes += [x[:, 4:6]] if self.clicks else []
        # channels-last: the head's convolutions take a third less time on this CPU (measured), same values
        h = self.body(torch.cat(planes, 1).contiguous(memory_format=torch.channels_last))
        clicks = self.head(h)
        if clicks.shape[-1] != self.grid:
            clicks = F.adaptive_avg_pool2d(clicks, self.grid)
        inter, pm, mm = (p * m).mean((1, 2, 3)), p.mean((1, 2, 3)), m.mean((1, 2, 3))
        stats = torch.stack([est, inter / (pm + mm - inter + 1e-6), inter / (pm + 1e-6), mm, pm,
                             p.amax((1, 2, 3))], 1)
        parts = [clicks.flatten(1)]
        if self.finish_head is not None:
            parts.append(self.finish_head(stats))
        value = F.relu(self.value(torch.cat([h.mean((2, 3)), stats], 1)))
        return torch.cat(parts + [value], 1), logits

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """The module's forward pass (shapes as in the class docstring)."""
        return self.maps(observations)[0]


def prm_head_modules(trunk: PRMNet) -> list[nn.Module]:
    """The parts of ``trunk`` that only its IoU estimate uses (:meth:`PRMNet.iou`'s verifier and correction):
    the PRM head of :class:`GroundedClickNet`, trainable with ``prm_head=True`` while the grounding stays frozen."""
    return [trunk.verifier, trunk.correction]


def load_trunk(policy, prm_path) -> None:
    """Copy the weights of the PRM checkpoint ``prm_path`` (``hlmat train-prm``) into ``policy``'s
    :class:`GroundedClickNet` trunk (shapes are checked by ``load_state_dict``)."""
    from agents.prm.train import load_prm_net

    net = load_prm_net(prm_path)
    fe = policy.features_extractor
    if not isinstance(fe, GroundedClickNet):
        raise TypeError(f"the policy's features extractor is {type(fe).__name__}, not GroundedClickNet")
    if net.config != fe.trunk.config:
        raise ValueError(f"the PRM {prm_path} has config {net.config}, the policy's trunk {fe.trunk.config}")
    fe.trunk.load_state_dict(net.state_dict())
