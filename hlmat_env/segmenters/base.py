"""The segmenter interface (the env's "physics") and the registry of segmenters by name.

A segmenter follows ``SamPredictor``'s shape: a costly :meth:`Segmenter.set_image` once per image, then a
cheap :meth:`Segmenter.predict` per step that receives *all clicks so far* and the previous
:class:`Prediction` (mask and segmenter-specific logits). A segmenter never sees the target mask.
"""
from __future__ import annotations

import hashlib
import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from hlmat_env.actions import Click
from hlmat_env.errors import unknown_name


@dataclass
class Prediction:
    """Output of a segmenter step.

    Attributes:
        mask: bool HxW at the image's full resolution.
        logits: segmenter-specific state fed back at the next step (SAM: 1x256x256 low-res logits), or None.
        score: the segmenter's own quality estimate, if any.
    """

    mask: np.ndarray
    logits: np.ndarray | None = None
    score: float | None = None

    def copy(self) -> "Prediction":
        """A deep copy (mask and logits copied)."""
        return Prediction(
            self.mask.copy(), None if self.logits is None else self.logits.copy(), self.score
        )


@runtime_checkable
class Segmenter(Protocol):
    """What the env needs from a click-to-mask model."""

    name: str

    def set_image(self, image: np.ndarray) -> None:
        """Prepare for a new image: uint8 HxWx3 RGB. Per-image precomputation belongs here."""

    def predict(
        self,
        clicks: Sequence[Click],
        prev: Prediction | None = None,
        box: Sequence[int] | None = None,
    ) -> Prediction:
        """Mask for all ``clicks`` so far (pixel coordinates of the image given to :meth:`set_image`).

        Args:
            clicks: every click of the episode so far, oldest first.
            prev: the previous step's prediction (or the start state's), or None.
            box: optional ``[x, y, w, h]`` box prompt (box start state), for segmenters that use one.
        """


def predict_batch(
    segmenter: Segmenter, click_lists: Sequence[Sequence[Click]], prev: Prediction | None = None
) -> list[Prediction]:
    """Predict several candidate click lists from the same previous state (tree search).

    Uses the segmenter's own ``predict_batch`` when it has one (SAM decodes a batch in one call).
    """
    own = getattr(segmenter, "predict_batch", None)
    if own is not None:
        return own(click_lists, prev)
    return [segmenter.predict(c, prev) for c in click_lists]


SEGMENTERS: dict[str, Callable[..., Segmenter]] = {}


def register_segmenter(name: str, factory: Callable[..., Segmenter]) -> None:
    """Make ``make_segmenter(name, **kwargs)`` call ``factory(**kwargs)``."""
    SEGMENTERS[name] = factory


def make_segmenter(spec: str | Segmenter = "default", **kwargs: Any) -> Segmenter:
    """Build a segmenter from a name or pass a segmenter object through.

    Names: ``"default"`` (the weight-free segmenter, also under its own name), ``"grabcut"``, ``"sam"``,
    ``"sam2"``, ``"auto"`` (SAM 2 or SAM when a checkpoint is given by ``sam2_checkpoint=`` / ``sam_checkpoint=``
    or ``$HLMAT_SAM2_CHECKPOINT`` / ``$HLMAT_SAM_CHECKPOINT``, else the default), and any name
    added with :func:`register_segmenter`. Keyword arguments that the chosen factory does not take are
    rejected by the factory itself.
    """
    if not isinstance(spec, str):
        if not isinstance(spec, Segmenter):
            raise TypeError(f"segmenter must be a name or an object with set_image/predict, got {spec!r}")
        return spec
    if spec not in SEGMENTERS:
        raise unknown_name("segmenter", spec, SEGMENTERS)
    return SEGMENTERS[spec](**kwargs)


def segmenter_name(spec: str | Segmenter) -> str:
    """The registry name of ``spec``, or a segmenter object's ``name`` (its class name when it has none)."""
    return spec if isinstance(spec, str) else getattr(spec, "name", type(spec).__name__)


def segmenter_version(spec: str | Segmenter = "default") -> str:
    """A short hash of the source file that defines the segmenter ``spec`` (a name or an object).

    Recorded next to anything computed with a segmenter (demonstrations, training states) so that files made
    by another version of it are refused instead of silently mixed in: the same name and kwargs give other
    masks when the segmenter's code changes.
    """
    if isinstance(spec, str):
        if spec not in SEGMENTERS:
            raise unknown_name("segmenter", spec, SEGMENTERS)
        spec = SEGMENTERS[spec]
    if inspect.isclass(spec):
        factories = [spec]
    elif inspect.isfunction(spec):  # a factory that picks a class ("auto"): any registered one may be chosen
        factories = [spec] + sorted({f for f in SEGMENTERS.values() if inspect.isclass(f)}, key=str)
    else:
        factories = [type(spec)]
    digest = hashlib.sha256()
    for factory in factories:
        try:
            digest.update(inspect.getsource(inspect.getmodule(factory)).encode())
        except (OSError, TypeError):  # defined interactively: no file to hash
            digest.update(f"{factory.__module__}.{factory.__qualname__}".encode())
    return digest.hexdigest()[:12]


def sam_checkpoint_from_env() -> str | None:
    """The SAM checkpoint configured by ``$HLMAT_SAM_CHECKPOINT`` (None when unset or empty)."""
    return os.environ.get("HLMAT_SAM_CHECKPOINT") or None
