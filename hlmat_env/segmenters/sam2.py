"""SAM 2 (``sam2``, image mode) as the env's click-to-mask model: SegAgent's recipe, with cached embeddings.

Registered as ``"sam2"``. The model is built by ``sam2.build_sam.build_sam2(config, checkpoint, device)``
from one of the configs packaged with ``sam2`` (see :data:`SAM2_CONFIGS`) and used as
``SAM2ImagePredictor`` uses it; the tests check the masks against a plain ``SAM2ImagePredictor`` loop.

Recipe, per step (the same as :mod:`hlmat_env.segmenters.sam` for SAM v1):

- **Prompts**: every click so far as a point prompt, ``(x, y)`` pixel order, label 1 positive / 0 negative;
  a box start state adds the box prompt (``box`` is ``[x, y, w, h]``, passed as ``[x, y, x+w, y+h]``). As in
  ``SAM2ImagePredictor``, the box enters the prompt encoder as two corner points (labels 2 and 3) placed
  before the clicks.
- **Mask input**: the previous prediction's low-res logits (``1 x 256 x 256`` for the official models) as
  ``mask_input``. A previous prediction that has a mask but no logits of that shape (e.g. a degraded start
  mask) is turned into logits of +/-:data:`~hlmat_env.segmenters._prompting.MASK_PRIOR_LOGIT` at the low
  resolution (SAM 2 stretches the image to a square, so the mask is resized the same way).
- **Multimask rule**: with exactly one click and no box SAM 2 returns 3 masks (``multimask_output=True``) and
  the one with the highest predicted IoU is kept; otherwise one mask is decoded (``multimask_output=False``;
  a model built by ``build_sam2`` then falls back to the best of the 3 masks when the single one is
  unstable, as it does in ``SAM2ImagePredictor``).
- **Threshold**: logits > 0. ``Prediction.logits`` holds the chosen low-res logits clamped to [-32, 32] as
  ``SAM2ImagePredictor`` returns them (float32 ``1 x 256 x 256``), ``Prediction.score`` SAM 2's predicted
  IoU.

Speed: the image features (the ``1 x 256 x 64 x 64`` embedding plus the two high-resolution feature maps of
the mask decoder, ``1 x 32 x 256 x 256`` and ``1 x 64 x 128 x 128`` for the official models, 16 MiB in all
as float32) are computed once per (image, model) and reused for every step and episode on that image
through :class:`~hlmat_env.segmenters.embedding_cache.EmbeddingCache` (in memory, LRU; optionally on disk
with ``sam2_cache_dir=``). :meth:`Sam2Segmenter.predict_batch` decodes many candidate click lists of equal
length in one prompt-encoder and mask-decoder call (tree search). The cache, the batching and the logits
carry-over are shared with SAM (:mod:`hlmat_env.segmenters._prompting`).

``sam2`` (and with it ``torch`` and ``hydra``) is imported on first use, so ``import hlmat_env`` stays light;
it is the optional extra ``pip install "hlmat[sam2]"``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import cv2
import numpy as np

from hlmat_env.actions import Click
from hlmat_env.errors import CheckpointError, require, unknown_name
from hlmat_env.segmenters._prompting import (PromptedSegmenter, best_of, check_rgb, click_arrays, default_device,
                                             mask_input_batch, model_and_id)
from hlmat_env.segmenters.base import Prediction
from hlmat_env.segmenters.embedding_cache import EmbeddingCache

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from sam2.modeling.sam2_base import SAM2Base

logger = logging.getLogger(__name__)

SAM2_CONFIGS: dict[str, str] = {
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "sam2_hiera_tiny": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_large": "configs/sam2/sam2_hiera_l.yaml",
}
"""Official SAM 2 / 2.1 models: name (the stem of the official checkpoint file, e.g. ``sam2.1_hiera_tiny.pt``)
-> the config packaged with ``sam2``. ``sam2_config=`` also accepts the config's stem (``"sam2.1_hiera_t"``,
``"sam2.1_hiera_b+"``), the packaged path itself, or any other ``configs/....yaml`` path inside ``sam2``."""

# trunk (Hiera) width and block count of each official size, to recognise a checkpoint by its tensors
_SIZES = {(96, 12): "tiny", (96, 16): "small", (112, 24): "base_plus", (144, 48): "large"}
_PATCH_KEY = "image_encoder.trunk.patch_embed.proj.weight"
_V21_KEY = "no_obj_embed_spatial"  # a parameter SAM 2.1 configs have and SAM 2.0 configs lack

SAM2_ONLY_KWARGS = (
    "sam2_checkpoint", "sam2_config", "sam2_overrides", "sam2_model", "sam2_cache_dir", "sam2_cache_size",
)
"""Keyword arguments that only the ``sam2`` segmenter takes (``"auto"`` drops them when it picks another)."""


def sam2_checkpoint_from_env() -> str | None:
    """The SAM 2 checkpoint configured by ``$HLMAT_SAM2_CHECKPOINT`` (None when unset or empty)."""
    return os.environ.get("HLMAT_SAM2_CHECKPOINT") or None


def _aliases() -> dict[str, str]:
    out = {}
    for name, path in SAM2_CONFIGS.items():
        for alias in (name, f"{name}.pt", path, Path(path).stem, Path(path).name):
            out[alias] = name
    return out


def resolve_sam2_config(config: str) -> tuple[str, str]:
    """The packaged config path and a short name for ``config``.

    Args:
        config: an official name (``"sam2.1_hiera_tiny"``, ``"sam2_hiera_large"``...), a config stem
            (``"sam2.1_hiera_t"``), or a config path inside ``sam2``
            (``"configs/sam2.1/sam2.1_hiera_t.yaml"``).

    Returns:
        (the path given to ``build_sam2``, the official name or the path itself for other configs).

    Raises:
        UnknownName: ``config`` is none of those.
    """
    aliases = _aliases()
    if config in aliases:
        name = aliases[config]
        return SAM2_CONFIGS[name], name
    if config.startswith("configs/") and config.endswith(".yaml"):
        return config, config
    raise unknown_name("SAM 2 config", config, SAM2_CONFIGS)


def describe_sam2_state_dict(state: dict) -> tuple[str | None, str]:
    """Guess the official model of a SAM 2 state dict from its shapes.

    Returns:
        (an official name of :data:`SAM2_CONFIGS` or None, a short description such as "Hiera width 96,
        12 blocks, SAM 2.1").
    """
    weight = state.get(_PATCH_KEY)
    if weight is None or not hasattr(weight, "shape"):
        return None, f"no {_PATCH_KEY!r} entry, so not a SAM 2 state dict"
    width = int(weight.shape[0])
    blocks = len({k.split(".")[3] for k in state if k.startswith("image_encoder.trunk.blocks.")})
    version = "sam2.1" if _V21_KEY in state else "sam2"
    size = _SIZES.get((width, blocks))
    described = f"Hiera width {width}, {blocks} blocks, {'SAM 2.1' if version == 'sam2.1' else 'SAM 2.0'}"
    return (None if size is None else f"{version}_hiera_{size}"), described


def _read_state_dict(path: Path) -> dict[str, Any]:
    """The ``"model"`` state dict of a SAM 2 checkpoint, memory-mapped when the file allows it."""
    import torch

    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # files in torch's legacy format cannot be memory-mapped
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise CheckpointError(f"cannot read SAM 2 checkpoint {path}: {type(e).__name__}: {e}") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        kind = type(ckpt).__name__ if not isinstance(ckpt, dict) else f"dict with keys {sorted(ckpt)[:5]}"
        raise CheckpointError(
            f"SAM 2 checkpoint {path} holds a {kind}, not sam2's format {{'model': state_dict}}"
        )
    return ckpt["model"]


def load_sam2(
    checkpoint: str | os.PathLike,
    config: str | None = None,
    overrides: Sequence[str] = (),
    device: str = "cpu",
) -> tuple["SAM2Base", str]:
    """Build SAM 2 with ``sam2.build_sam.build_sam2`` and load a checkpoint file into it.

    Args:
        checkpoint: path of an official checkpoint (e.g. ``sam2.1_hiera_tiny.pt``) or any file in sam2's
            format ``{"model": state_dict}``.
        config: see :func:`resolve_sam2_config`; None reads it off the file name (official names) or, failing
            that, off the checkpoint's tensor shapes.
        overrides: extra hydra overrides passed to ``build_sam2`` (``"++model.image_size=512"``...).
        device: torch device string for the model.

    Returns:
        (the model in eval mode on ``device``, a name of the config for cache keys and messages).

    Raises:
        CheckpointError: the file is missing, unreadable, not in sam2's format, or does not match ``config``.
        UnknownName: ``config`` is not a known config name.
        DependencyNotInstalled: ``sam2`` is not installed.
    """
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"SAM 2 checkpoint {path} does not exist. Download an official one ("
            + ", ".join(f"{n}.pt" for n in SAM2_CONFIGS)
            + ") and pass its path as sam2_checkpoint= or $HLMAT_SAM2_CHECKPOINT."
        )
    require("sam2", "sam2")
    from sam2.build_sam import build_sam2

    state = _read_state_dict(path)
    guess, described = describe_sam2_state_dict(state)
    if config is None:
        by_name = _aliases().get(path.name) or _aliases().get(path.stem)
        config = by_name or guess
        if config is None:
            raise CheckpointError(
                f"cannot tell the SAM 2 config of {path} ({described}); pass sam2_config= one of "
                f"{sorted(SAM2_CONFIGS)} or a config path inside sam2"
            )
    config_path, config_name = resolve_sam2_config(config)
    hint = f"; it looks like {guess!r} ({described}): pass sam2_config={guess!r}" if guess not in (
        None, config_name) else f" ({described})"
    mismatch = f"SAM 2 checkpoint {path} does not match sam2_config {config_name!r}{hint}"
    if config_name in SAM2_CONFIGS and guess is not None and guess != config_name and not overrides:
        raise CheckpointError(mismatch)  # fail before building a large model
    del state
    try:
        model = build_sam2(config_path, str(path), device=device, hydra_overrides_extra=list(overrides))
    except (RuntimeError, KeyError, ValueError) as e:  # missing/unexpected keys, size mismatches
        first = (str(e).strip().splitlines() or ["missing or unexpected keys (logged above)"])[0]
        raise CheckpointError(f"{mismatch}. torch says: {first}") from e
    if overrides:
        config_name = f"{config_name}+{hashlib.sha256('|'.join(overrides).encode()).hexdigest()[:8]}"
    return model.eval(), config_name


class Sam2Segmenter(PromptedSegmenter):
    """SAM 2 behind the :class:`~hlmat_env.segmenters.base.Segmenter` interface.

    Args:
        sam2_checkpoint: path of a SAM 2 checkpoint; defaults to ``$HLMAT_SAM2_CHECKPOINT``.
        sam2_config: the model's config (see :func:`resolve_sam2_config`), or None (default) to read it off
            the checkpoint's file name or tensor shapes.
        sam2_overrides: extra hydra overrides for ``build_sam2`` (custom or shrunk architectures).
        sam2_model: an already built ``SAM2Base`` used as is instead of a checkpoint (benchmarks, tests). Its
            features are cached in memory only, keyed by the object's identity.
        device: torch device, default ``"cuda"`` when available else ``"cpu"``.
        sam2_cache_dir: optional folder for on-disk features (needs a checkpoint file, whose path, size and
            modification time are part of the key).
        sam2_cache_size: how many images' features to keep in memory (16 MiB each for the official models).
        embedding_cache: an :class:`EmbeddingCache` to share between segmenters (overrides the two
            ``sam2_cache_*`` options).

    Raises:
        CheckpointError: no checkpoint configured, file missing or unreadable, or file and config do not
            match.
        DependencyNotInstalled: ``sam2`` is not installed (``pip install "hlmat[sam2]"``).
    """

    name = "sam2"

    def __init__(
        self,
        sam2_checkpoint: str | os.PathLike | None = None,
        sam2_config: str | None = None,
        sam2_overrides: Sequence[str] = (),
        sam2_model: "SAM2Base | None" = None,
        device: str | None = None,
        sam2_cache_dir: str | os.PathLike | None = None,
        sam2_cache_size: int = 16,
        embedding_cache: EmbeddingCache | None = None,
    ):
        require("sam2", "sam2")
        from sam2.utils.transforms import SAM2Transforms

        self.device = device or default_device()
        self.model, self.model_id = model_and_id(
            "sam2", sam2_model, sam2_checkpoint, sam2_cache_dir, self.device,
            load=lambda path: load_sam2(path, sam2_config, tuple(sam2_overrides), self.device),
            from_env=sam2_checkpoint_from_env, env_var="HLMAT_SAM2_CHECKPOINT", module_prefix="sam2-module")
        self.cache = embedding_cache or EmbeddingCache(sam2_cache_size, sam2_cache_dir)
        with warnings.catch_warnings():  # sam2's transforms use torch.jit.script, deprecated in recent torch
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
            self.transforms = SAM2Transforms(resolution=self.model.image_size, mask_threshold=0.0)
        self._shapes = self._feature_shapes()
        self._features: "dict[str, Any] | None" = None
        self._image_hw: tuple[int, int] | None = None

    # ------------------------------------------------------------------ image
    def _feature_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the cached features: the decoder's high-res maps (if any), then the image embedding."""
        m = self.model
        e = m.sam_image_embedding_size
        shapes: list[tuple[int, ...]] = []
        if m.use_high_res_features_in_sam:
            dec = m.sam_mask_decoder
            shapes += [(1, dec.conv_s0.out_channels, 4 * e, 4 * e),
                       (1, dec.conv_s1.out_channels, 2 * e, 2 * e)]
        return shapes + [(1, m.hidden_dim, e, e)]

    def set_image(self, image: np.ndarray) -> None:
        """Encode ``image`` (uint8 HxWx3 RGB), or take its features from the cache.

        Raises:
            ValueError: ``image`` is not uint8 HxWx3.
        """
        import torch

        image = check_rgb(image, "SAM 2")
        packed = self._features_of(image)
        sizes = [int(np.prod(s)) for s in self._shapes]
        if packed.shape != (sum(sizes),):
            raise RuntimeError(f"cached SAM 2 features hold {packed.shape} values, expected {sum(sizes)}")
        flat = torch.from_numpy(packed).to(self.device)
        feats = [f.view(s) for f, s in zip(torch.split(flat, sizes), self._shapes)]
        self._features = {"image_embed": feats[-1], "high_res_feats": feats[:-1]}
        self._image_hw = (int(image.shape[0]), int(image.shape[1]))

    def _embed(self, image: np.ndarray) -> np.ndarray:
        """All image features, as SAM2ImagePredictor computes them, in one flat float32 array."""
        import torch

        x = self.transforms(image)[None].to(self.device)
        model = self.model
        with torch.inference_mode():
            backbone_out = model.forward_image(x)
            _, vision_feats, _, feat_sizes = model._prepare_backbone_features(backbone_out)
            if model.directly_add_no_mem_embed:  # as SAM2ImagePredictor.set_image
                vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
            feats = [f.permute(1, 2, 0).reshape(1, -1, *hw) for f, hw in zip(vision_feats, feat_sizes)]
        got = [tuple(f.shape) for f in feats]
        if got != self._shapes:
            raise RuntimeError(f"SAM 2 image features have shapes {got}, expected {self._shapes}")
        return np.concatenate([f.float().cpu().numpy().ravel() for f in feats])

    # ------------------------------------------------------------------ prompts
    def _decode(
        self, click_lists: list[Sequence[Click]], mask_input: np.ndarray | None, box: Sequence[int] | None
    ) -> list[Prediction]:
        """One prompt-encoder + mask-decoder call for ``B`` click lists of equal length ``N``, as
        ``SAM2ImagePredictor._prep_prompts`` + ``_predict`` do for one list."""
        import torch

        model, dev, b, hw = self.model, self.device, len(click_lists), self._image_hw
        n = len(click_lists[0])
        points = None
        if n:
            coords, labels = click_arrays(click_lists)
            coords = torch.as_tensor(coords, dtype=torch.float, device=dev)
            labels = torch.as_tensor(labels, dtype=torch.int, device=dev)
            points = (self.transforms.transform_coords(coords, normalize=True, orig_hw=hw), labels)
        if box is not None:
            x, y, w, h = (float(v) for v in box)
            xyxy = torch.as_tensor(np.array([x, y, x + w, y + h]), dtype=torch.float, device=dev)
            corners = self.transforms.transform_boxes(xyxy, normalize=True, orig_hw=hw).expand(b, 2, 2)
            corner_labels = torch.tensor([[2, 3]], dtype=torch.int, device=dev).repeat(b, 1)
            if points is None:
                points = (corners, corner_labels)
            else:
                points = (torch.cat([corners, points[0]], dim=1),
                          torch.cat([corner_labels, points[1]], dim=1))
        masks = mask_input_batch(mask_input, b, dev)
        multimask = n == 1 and box is None
        with torch.inference_mode():
            sparse, dense = model.sam_prompt_encoder(points=points, boxes=None, masks=masks)
            low_res, iou, _, _ = model.sam_mask_decoder(
                image_embeddings=self._features["image_embed"],
                image_pe=model.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
                repeat_image=b > 1,
                high_res_features=self._features["high_res_feats"],
            )
            low_res, scores = best_of(low_res, iou)
            full = self.transforms.postprocess_masks(low_res, hw) > 0.0
            full = list(full[:, 0].cpu().numpy())
            logits = torch.clamp(low_res, -32.0, 32.0).float().cpu().numpy()
        scores = scores.float().cpu().numpy()
        return [Prediction(full[i], logits[i], float(scores[i])) for i in range(b)]

    def _low_res_shape(self) -> tuple[int, int]:
        """``(L, L)``: the prompt encoder's mask input size (256 x 256 for the official models)."""
        return tuple(self.model.sam_prompt_encoder.mask_input_size)

    def _mask_to_low_res(self, mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """``mask`` stretched to ``shape`` as SAM 2 stretches the image to a square; float32 in [0, 1]."""
        return cv2.resize(mask.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
