"""The plumbing that SAM and SAM 2 share behind the Segmenter interface (one home for both).

- :func:`model_and_id`: a given module, or a checkpoint (argument or environment variable) loaded on the
  device, and the model identity that keys the embedding cache;
- :class:`PromptedSegmenter`: the embed-once cache (:meth:`~PromptedSegmenter._features_of`), ``predict`` as
  a batch of one, ``predict_batch`` grouping candidate click lists by length (one decoder call per length;
  padding would change the masks), and the logits carry-over (:meth:`~PromptedSegmenter._mask_input`: the
  previous low-res logits, else logits of +/-:data:`MASK_PRIOR_LOGIT` made from the previous mask);
- :func:`click_arrays`, :func:`mask_input_batch` and :func:`best_of`: the prompt tensors and the choice of
  the mask with the highest predicted IoU.

What differs stays in each model's module: the image transform, the features, the decoder call, and how a
mask is brought to the low resolution (SAM pads the resized image, SAM 2 stretches it to a square).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hlmat_env.actions import Click
from hlmat_env.errors import CheckpointError
from hlmat_env.segmenters.base import Prediction
from hlmat_env.segmenters.embedding_cache import EmbeddingCache, image_key
from hlmat_env.segmenters.sam_checkpoint import checkpoint_identity

MASK_PRIOR_LOGIT = 10.0
"""Magnitude of the logits made from a mask that has no SAM logits (sigmoid(10) ~ 0.99995)."""


def default_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def model_and_id(
    name: str,
    model: Any,
    checkpoint: str | os.PathLike | None,
    cache_dir: str | os.PathLike | None,
    device: str,
    load: Callable[[str | os.PathLike], tuple[Any, str]],
    from_env: Callable[[], str | None],
    env_var: str,
    module_prefix: str,
) -> tuple[Any, str]:
    """The model to run and its identity for the embedding cache.

    Args:
        name: the segmenter's name (``"sam"``, ``"sam2"``): the prefix of its options in messages.
        model: an already built module, used as is (its features are cached in memory only), or None.
        checkpoint: the checkpoint file, or None for ``from_env()``.
        cache_dir: the on-disk cache folder asked for (needs a checkpoint file: it keys the disk cache).
        device: the torch device for the model.
        load: ``load(checkpoint) -> (model, type or config name)``.
        from_env: the checkpoint configured by the environment, or None.
        env_var: that environment variable's name, for the error message.
        module_prefix: the identity prefix of a given module (``id()`` follows).

    Returns:
        ``(model on device in eval mode, model identity)``.

    Raises:
        ValueError: a module with a disk cache.
        CheckpointError: no module and no checkpoint configured (and whatever ``load`` raises).
    """
    if model is not None:
        if cache_dir is not None:
            raise ValueError(f"{name}_cache_dir needs {name}_checkpoint (it keys the disk cache), not {name}_model")
        return model.to(device).eval(), f"{module_prefix}-{id(model):x}"
    checkpoint = checkpoint or from_env()
    if checkpoint is None:
        raise CheckpointError(
            f"segmenter '{name}' needs a checkpoint: pass {name}_checkpoint=PATH or set ${env_var} "
            "(or use segmenter='auto' to fall back to the weight-free default)"
        )
    loaded, type_name = load(checkpoint)
    return loaded, f"{type_name}-{checkpoint_identity(Path(checkpoint).expanduser())}"


def check_rgb(image: np.ndarray, what: str) -> np.ndarray:
    """``image`` as an array, checked to be uint8 HxWx3.

    Raises:
        ValueError: another dtype or shape, naming ``what`` (the model) and what was given.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{what} needs a uint8 HxWx3 RGB image, got {image.dtype} {image.shape}")
    return image


def click_arrays(click_lists: Sequence[Sequence[Click]]) -> tuple[np.ndarray, np.ndarray]:
    """Point prompts of ``B`` click lists of equal length ``N``: float64 ``B x N x 2`` ``(x, y)`` pixel
    coordinates and int64 ``B x N`` labels (1 positive, 0 negative)."""
    coords = np.array([[[c.x, c.y] for c in clicks] for clicks in click_lists], dtype=np.float64)
    labels = np.array([[int(c.positive) for c in clicks] for clicks in click_lists], dtype=np.int64)
    return coords, labels


def mask_input_batch(mask_input: np.ndarray | None, b: int, device: Any) -> Any:
    """The ``1 x L x L`` mask input as a float tensor ``B x 1 x L x L`` on ``device`` (None stays None)."""
    import torch

    if mask_input is None:
        return None
    return torch.as_tensor(mask_input, dtype=torch.float, device=device)[None].expand(b, -1, -1, -1)


def best_of(low_res: Any, iou: Any) -> tuple[Any, Any]:
    """Per row, the low-res logits ``B x 1 x L x L`` and predicted IoU ``B`` of the mask with the highest
    predicted IoU among ``low_res`` ``B x M x L x L`` (``M`` = 3 multimask outputs, or 1)."""
    import torch

    best = iou.argmax(dim=1)
    rows = torch.arange(low_res.shape[0], device=low_res.device)
    return low_res[rows, best][:, None], iou[rows, best]


class PromptedSegmenter:
    """Base of the SAM-family segmenters: the embed-once cache, batched prediction and the logits carry-over.

    A subclass sets ``model_id`` and ``cache`` (an :class:`EmbeddingCache`) and implements ``_embed(image)``
    (features as one float32 array), ``_decode(click_lists, mask_input, box)``, ``_low_res_shape()`` and
    ``_mask_to_low_res(mask, shape)``; its ``set_image`` calls :meth:`_features_of` and sets ``_image_hw``.
    """

    model_id: str
    cache: EmbeddingCache
    _image_hw: tuple[int, int] | None = None

    def _features_of(self, image: np.ndarray) -> np.ndarray:
        """The cached features of ``image`` under this model, computed (``_embed``) and stored on a miss."""
        key = image_key(image, self.model_id)
        features = self.cache.get(key)
        if features is None:
            features = self._embed(image)
            self.cache.put(key, features)
        return features

    def predict(
        self, clicks: Sequence[Click], prev: Prediction | None = None, box: Sequence[int] | None = None
    ) -> Prediction:
        """The model's mask for all ``clicks`` so far (see the model module's docstring for the recipe).

        Args:
            clicks: every click of the episode, oldest first, in pixels of the image given to ``set_image``.
            prev: the previous prediction; its ``logits`` (or, failing that, its ``mask``) is the mask input.
            box: optional ``[x, y, w, h]`` box prompt in pixels.

        Returns:
            :class:`Prediction` with ``mask`` bool HxW, ``logits`` float32 ``1 x 256 x 256`` (for the official
            models), ``score`` the predicted IoU. With no click and no box there is no prompt: ``prev`` (or an
            empty mask) is returned.

        Raises:
            RuntimeError: no image was set.
        """
        return self.predict_batch([clicks], prev, box)[0]

    def predict_batch(
        self,
        click_lists: Sequence[Sequence[Click]],
        prev: Prediction | None = None,
        box: Sequence[int] | None = None,
    ) -> list[Prediction]:
        """Predictions for several candidate click lists from the same ``prev`` (tree search).

        Lists of equal length are decoded together in one prompt-encoder + mask-decoder call (shorter lists
        are not padded: padding points would change the masks, and the multimask rule depends on the click
        count); the results equal those of :meth:`predict` on each list up to float rounding.

        Args:
            click_lists: candidate click lists, each oldest first.
            prev: the previous prediction shared by all candidates, or None.
            box: optional ``[x, y, w, h]`` box prompt in pixels, shared by all candidates.

        Returns:
            One :class:`Prediction` per list, in order.

        Raises:
            RuntimeError: no image was set.
        """
        if self._image_hw is None:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        out: list[Prediction | None] = [None] * len(click_lists)
        groups: dict[int, list[int]] = {}
        for i, clicks in enumerate(click_lists):
            groups.setdefault(len(clicks), []).append(i)
        mask_input = self._mask_input(prev)
        for n, indices in groups.items():
            if n == 0 and box is None:
                empty = prev.copy() if prev is not None else Prediction(np.zeros(self._image_hw, bool))
                for i in indices:
                    out[i] = empty.copy()
                continue
            preds = self._decode([click_lists[i] for i in indices], mask_input, box)
            for i, p in zip(indices, preds):
                out[i] = p
        return out  # type: ignore[return-value]

    def _mask_input(self, prev: Prediction | None) -> np.ndarray | None:
        """``1 x L x L`` float32 mask input from ``prev``: its logits, else logits made from its mask."""
        if prev is None:
            return None
        low = self._low_res_shape()
        if prev.logits is not None and tuple(np.shape(prev.logits)) == (1, *low):
            return np.asarray(prev.logits, dtype=np.float32)
        if prev.mask is None or not np.any(prev.mask):
            return None
        small = self._mask_to_low_res(prev.mask, low)
        return ((small > 0.5).astype(np.float32) * 2 - 1)[None] * MASK_PRIOR_LOGIT

    # to implement
    def _embed(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _decode(self, click_lists: list[Sequence[Click]], mask_input: np.ndarray | None,
                box: Sequence[int] | None) -> list[Prediction]:
        raise NotImplementedError

    def _low_res_shape(self) -> tuple[int, int]:
        raise NotImplementedError

    def _mask_to_low_res(self, mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError
