"""Process reward models behind one scorer interface: ``score(image, mask, caption) -> float`` (IoU estimate in
[0, 1]) and ``score_batch``. Both the learned value head (:class:`LearnedPRM`) and the MLLM's own estimate
(:class:`MLLMPRM`, the ``Current IOU: NN`` prefix) implement it, as does the mean of several
(:class:`EnsemblePRM`), so the stop signal and tree search accept any of them. :func:`load_prm` builds one
from a spec.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from agents.view import StateView


@runtime_checkable
class PRM(Protocol):
    """What the stop signal and tree search need: an estimate of a mask's IoU with the unseen target."""

    def score(self, image: np.ndarray, mask: np.ndarray, caption: str = "") -> float:
        """IoU estimate in [0, 1] of bool HxW ``mask`` on uint8 HxWx3 ``image``."""

    def score_batch(self, image: np.ndarray, masks: Sequence[np.ndarray], caption: str = "") -> list[float]:
        """:meth:`score` of several masks of the same image."""


class LearnedPRM:
    """The learned value head (:class:`agents.prm.model.PRMNet`). An empty mask scores 0 (its IoU is 0 for
    any non-empty target; the network is not trained on empty masks). The trunk's passes over the last image
    and caption are kept, so scoring several masks of one state, or consecutive calls on it, costs the trunk
    once (and a cheap verifier pass per mask).

    Args:
        path: checkpoint file or folder (``prm.pt``) written by ``hlmat train-prm``.
        flips: estimates averaged over this many flips (1-4) of image, mask and caption
            (:func:`agents.prm.train.predict`); 4 (default) is a little more accurate, 1 four times cheaper.
    """

    def __init__(self, path: str | Path, flips: int = 4):
        import torch

        from agents.prm.train import load_prm_net

        if not 1 <= flips <= 4:
            raise ValueError(f"flips must be 1-4, got {flips}")
        self.path, self.flips = str(path), flips
        self.model = load_prm_net(path)
        self._torch = torch
        self._last: tuple[Any, Any] = (None, None)

    def _scenes(self, image: np.ndarray, caption: str) -> list[Any]:
        import zlib

        from agents.prm.model import resize_image
        from agents.prm.train import caption_table, flip_maps

        key = (image.shape, zlib.crc32(np.ascontiguousarray(image).tobytes()), caption)
        if self._last[0] != key:
            cfg = self.model.config
            img = self._torch.from_numpy(resize_image(image, cfg.size)[None])
            caps = caption_table([caption], cfg.caption_dim)  # (1, 4 flips, caption_len)
            with self._torch.no_grad():
                codes = [self.model.scene(flip_maps(img, f), caps[:, f]) for f in range(self.flips)]
            self._last = (key, codes)
        return self._last[1]

    def score(self, image: np.ndarray, mask: np.ndarray, caption: str = "") -> float:
        """IoU estimate in [0, 1] of bool HxW ``mask`` on uint8 HxWx3 ``image`` (see :class:`PRM`)."""
        return self.score_batch(image, [mask], caption)[0]

    def score_batch(self, image: np.ndarray, masks: Sequence[np.ndarray], caption: str = "") -> list[float]:
        """Estimates of several masks of one image, in order (see :class:`PRM`)."""
        from agents.prm.train import flip_maps
        from hlmat_env.masks import coverage_map

        for m in masks:
            if np.shape(m) != image.shape[:2]:
                raise ValueError(f"mask shape {np.shape(m)} != image shape {image.shape[:2]}")
        out = [0.0] * len(masks)
        live = [i for i, m in enumerate(masks) if np.any(m)]
        if not live:
            return out
        codes = self._scenes(image, caption)
        small = self._torch.from_numpy(np.stack([coverage_map(masks[i], self.model.config.size) for i in live]))
        rows = self._torch.zeros(len(live), dtype=self._torch.long)
        with self._torch.no_grad():
            pred = sum(self.model.iou(code.take(rows), flip_maps(small, f)) for f, code in enumerate(codes))
        for i, p in zip(live, (pred / len(codes)).tolist()):
            out[i] = float(p)
        return out


class EnsemblePRM:
    """The mean estimate of several PRMs (e.g. ``train-prm`` runs with different ``--train-seed``): averaging
    independently trained value heads evens out the run-to-run spread of one training recipe.

    Args:
        members: the PRMs to average (at least one).
    """

    def __init__(self, members: Sequence[PRM]):
        if not members:
            raise ValueError("an ensemble PRM needs at least one member")
        self.members = list(members)

    def score(self, image: np.ndarray, mask: np.ndarray, caption: str = "") -> float:
        """IoU estimate in [0, 1] of bool HxW ``mask`` on uint8 HxWx3 ``image`` (see :class:`PRM`)."""
        return self.score_batch(image, [mask], caption)[0]

    def score_batch(self, image: np.ndarray, masks: Sequence[np.ndarray], caption: str = "") -> list[float]:
        """Estimates of several masks of one image, in order (see :class:`PRM`)."""
        scores = np.mean([m.score_batch(image, masks, caption) for m in self.members], axis=0)
        return [float(v) for v in scores]


class MLLMPRM:
    """The MLLM's own PRM: asks the agent for its next answer on the state and reads the ``Current IOU: NN``
    prefix (:meth:`hlmat_env.codecs.Codec.parse`). A state whose answer has no estimate scores 0.

    The agent sees the state through a :class:`agents.view.StateView` (``image``, ``mask``, ``caption``, no
    clicks), the same inputs SegAgent's policy has (image, current mask, description).

    Args:
        agent: an agent whose :class:`~agents.base.Decision` ``text`` carries the estimate (an MLLM agent
            trained on data with the ``Current IOU`` prefix).
        codec: the coordinate codec used to parse its text (name or object); only the IoU prefix is used.
        obs_size, coord_bins: the env settings the agent expects.
    """

    def __init__(self, agent: Any, codec: Any = "qwen2", obs_size: int = 128, coord_bins: int = 1000):
        from hlmat_env.codecs import get_codec

        self.agent, self.codec = agent, get_codec(codec)
        self.obs_size, self.coord_bins = obs_size, coord_bins

    def estimate(self, text: str | None, width: int, height: int) -> float | None:
        """The IoU estimate in a model answer (None when absent or unparseable)."""
        return None if text is None else self.codec.parse(text, width, height).iou

    def score(self, image: np.ndarray, mask: np.ndarray, caption: str = "") -> float:
        """IoU estimate in [0, 1] of bool HxW ``mask`` on uint8 HxWx3 ``image`` (see :class:`PRM`)."""
        import cv2

        mask = np.asarray(mask, bool)
        h, w = mask.shape
        s = self.obs_size
        obs = {"image": cv2.resize(image, (s, s), interpolation=cv2.INTER_AREA),
               "mask": cv2.resize(mask.astype(np.uint8) * 255, (s, s), interpolation=cv2.INTER_NEAREST)[..., None],
               "caption": caption}
        view = StateView(image, mask, caption, coord_bins=self.coord_bins, obs_size=s)
        value = self.estimate(self.agent.act(obs, view).text, w, h)
        return 0.0 if value is None else float(value)

    def score_batch(self, image: np.ndarray, masks: Sequence[np.ndarray], caption: str = "") -> list[float]:
        """Estimates of several masks of one image, in order (see :class:`PRM`)."""
        return [self.score(image, m, caption) for m in masks]


def load_prm(spec: str | PRM, agent: Any = None) -> PRM:
    """A PRM from a spec: a checkpoint path (:class:`LearnedPRM`), ``"default"`` (the shipped default PRM,
    :func:`default_prm_path`), comma-separated checkpoint paths (their :class:`EnsemblePRM`), ``"mllm"`` (:class:`MLLMPRM` around ``agent``, which must be given) or ``"policy"``
    (a grounded ``ppo`` agent's own PRM head, :class:`agents.ppo.heads.PolicyPRM`). A PRM object is returned as is.
    """
    if not isinstance(spec, str):
        return spec
    if spec == "policy":  # a grounded PPO policy's own PRM head (agents.ppo.heads)
        from agents.ppo.heads import PolicyPRM

        return PolicyPRM(agent)
    if spec == "mllm":
        if agent is None:
            raise ValueError("the 'mllm' PRM reads an MLLM agent's 'Current IOU' estimate; pass agent=")
        return MLLMPRM(agent, codec=getattr(agent, "codec", "qwen2"))
    paths = checkpoint_paths(spec)
    return LearnedPRM(paths[0]) if len(paths) == 1 else EnsemblePRM([LearnedPRM(p) for p in paths])


DEFAULT_PRM = "prm_default.pt"
"""File name of the shipped default PRM in ``agents/assets`` (with its settings record ``prm_default.json``)."""


def default_prm_path() -> Path:
    """The shipped default PRM checkpoint (``agents/assets/prm_default.pt``).

    Raises:
        CheckpointError: the asset is missing (never a silent fallback to another PRM).
    """
    from agents.shipped import shipped_asset
    from hlmat_env.errors import CheckpointError

    p = shipped_asset(DEFAULT_PRM)
    if not p.is_file():
        raise CheckpointError(f"the default PRM is missing: {p} (the package ships it; reinstall hlmat, or train "
                              "one with `hlmat train-prm` and pass its path with --prm)")
    return p


def checkpoint_paths(spec: str) -> list[str]:
    """The checkpoint paths of a learned-PRM spec (one path, or several comma-separated: an ensemble);
    ``default`` is the shipped default PRM (:func:`default_prm_path`) unless a file or folder of that name
    exists."""
    return [str(default_prm_path()) if p == "default" and not Path(p).exists() else p
            for p in spec.split(",") if p]
