"""Samples, the dataset interface and the registry of dataset specs (``"synthetic:val"``, ``"folder:PATH"``...).

A dataset is a lazily loaded sequence of :class:`Sample`. Specs have the form ``KIND`` or ``KIND:ARG``; each
kind is registered with :func:`register_dataset`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from hlmat_env.errors import DatasetError, unknown_name


@dataclass
class Sample:
    """One annotation task.

    Attributes:
        image: uint8 HxWx3 RGB.
        target: int8 HxW, 1 object, 0 background, -1 ignore (never shown to agents).
        caption: referring description ("" when the dataset has none).
        sample_id: unique within its dataset.
        image_ref: where the image came from (a path, or a spec for generated images).
        meta: dataset-specific extras (e.g. COCO ids).
    """

    image: np.ndarray
    target: np.ndarray
    caption: str = ""
    sample_id: str = ""
    image_ref: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise DatasetError(
                f"sample {self.sample_id!r}: image must be uint8 HxWx3, got {self.image.dtype} {self.image.shape}"
            )
        if self.target.shape != self.image.shape[:2]:
            raise DatasetError(
                f"sample {self.sample_id!r}: target shape {self.target.shape} != image shape {self.image.shape[:2]}"
            )


class Dataset(Sequence[Sample]):
    """Base class: subclasses implement ``__len__`` and ``load(index)``; ``name`` is a spec that rebuilds it."""

    name: str = "dataset"

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int) -> Sample:
        raise NotImplementedError

    def sample_id(self, index: int) -> str:
        """Id of sample ``index`` without loading pixels (override when cheaper than :meth:`load`)."""
        return self.load(index).sample_id

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"sample index {index} out of range for {self.name} with {n} samples")
        return self.load(index % n)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self.load(i)


def read_image(path: str | Path) -> np.ndarray:
    """uint8 HxWx3 RGB from an image file; raises :class:`DatasetError` naming the file."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except FileNotFoundError as e:
        raise DatasetError(f"image file not found: {path}") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DatasetError(f"cannot read image file {path}: {e}") from e


def read_gray(path: str | Path) -> np.ndarray:
    """uint8 HxW from a single-channel (or palette/RGB, then its first channel) mask file."""
    try:
        with Image.open(path) as im:
            a = np.array(im if im.mode in ("L", "P", "1", "I", "I;16") else im.convert("L"))
    except FileNotFoundError as e:
        raise DatasetError(f"mask file not found: {path}") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DatasetError(f"cannot read mask file {path}: {e}") from e
    if a.ndim == 3:
        a = a[..., 0]
    return a


DATASETS: dict[str, Callable[[str | None], Dataset]] = {}


def register_dataset(kind: str, factory: Callable[[str | None], Dataset]) -> None:
    """Make specs ``KIND`` / ``KIND:ARG`` call ``factory(ARG or None)``."""
    DATASETS[kind] = factory


def query_options(query: str, kind: str, allowed: dict[str, str]) -> dict[str, str]:
    """Parse the ``key=value&key=value`` options of a dataset spec (the part after ``?``).

    Args:
        query: the options text; kind: the dataset kind, for error messages.
        allowed: option name -> what its value looks like (shown in the error for an unknown option).

    Raises:
        DatasetError: an item without ``=`` or with a name not in ``allowed``.
    """
    opts: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq or key not in allowed:
            hint = ", ".join(f"{k}={v}" for k, v in allowed.items())
            raise DatasetError(f"bad option {item!r} in the {kind} spec; allowed: {hint}")
        opts[key] = value
    return opts


def make_dataset(spec: str | Dataset | Sequence[Sample]) -> Dataset | Sequence[Sample]:
    """Build a dataset from a spec (``synthetic``, ``synthetic:val``, ``folder:PATH``, ...) or pass one through."""
    if not isinstance(spec, str):
        if len(spec) == 0:
            raise DatasetError("the dataset is empty")
        return spec
    kind, _, arg = spec.partition(":")
    if kind not in DATASETS:
        raise unknown_name("dataset kind", kind, DATASETS)
    ds = DATASETS[kind](arg or None)
    if len(ds) == 0:
        raise DatasetError(f"dataset {spec!r} has no samples")
    return ds

