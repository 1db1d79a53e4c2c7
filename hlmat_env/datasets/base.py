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

from hlmat_env.errors import DatasetError, EmptyTarget, unknown_name


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
        """Read sample ``index`` (``0 <= index < len(self)``; :meth:`__getitem__` checks the range).

        Raises:
            DatasetError: the sample's files cannot be read, naming them.
        """
        raise NotImplementedError

    def sample_id(self, index: int) -> str:
        """Id of sample ``index`` without loading pixels (override when cheaper than :meth:`load`)."""
        return self.load(index).sample_id

    def files(self, index: int) -> list[str]:
        """The files sample ``index`` is read from (image, mask, annotation files), without reading them.

        For error reports: what to look at when the sample cannot be loaded. Empty for generated samples
        (the default; file-backed datasets override it).

        Args:
            index: sample index in ``[0, len(self))``.

        Returns:
            File paths as strings.
        """
        return []

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


GREY, INDEX = "grey", "index"
"""How :func:`read_mask` says its values are to be read: grey levels (0-255) or palette indices (0-255)."""


def read_mask(path: str | Path) -> tuple[np.ndarray, str]:
    """The raw values of a mask file and how to read them (the folder rule applies them:
    :func:`hlmat_env.datasets.folder.mask_to_target`).

    * single-channel 8-bit (``L``), bilevel (``1``: 0/1) and grey + alpha (``LA``, alpha ignored): grey levels;
    * 16-bit and 32-bit integer (``I;16``, ``I``) and integral float (``F``): grey levels when every value
      fits 8 bits, or is an 8-bit level scaled by 257 (65535 = 255); a 0/N binary mask becomes 0/255;
      anything else is refused;
    * RGB / RGBA / RGBX: the first (red) channel as grey levels, as RITM reads the Berkeley and DAVIS masks
      (alpha ignored), so red, magenta and white object pixels are all 255;
    * palette (``P``, ``PA``): when every index used has a grey palette colour, those grey levels; else the
      indices themselves (VOC: 0 background, 255 void, one other index = the object).

    Args:
        path: the mask file.

    Returns:
        ``(values, kind)``: uint8 HxW values and :data:`GREY` or :data:`INDEX`.

    Raises:
        DatasetError: the file is missing, unreadable, truncated, of an unsupported mode (CMYK, YCbCr...) or
            holds values that no rule above reads; the message names the file.
    """
    try:
        with Image.open(path) as im:
            mode = im.mode
            palette = im.getpalette() if mode in ("P", "PA") else None
            a = np.array(im)
    except FileNotFoundError as e:
        raise DatasetError(f"mask file not found: {path}") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DatasetError(f"cannot read mask file {path}: {e}") from e
    if a.ndim == 3:
        if mode in ("RGB", "RGBA", "RGBX") and not a[..., 0].any() and a[..., 1:3].any():
            raise EmptyTarget(f"mask file {path}: its first (red) channel is all 0 but green/blue are not; RGB "
                              "masks are read by their first channel (as RITM does): store the object as "
                              "white, red or grey")
        a = a[..., 0]  # R of RGB/RGBA/RGBX, L of LA, the index of PA
    if a.ndim != 2 or a.size == 0:
        raise DatasetError(f"mask file {path} has no HxW pixel grid (mode {mode}, shape {a.shape})")
    if mode in ("P", "PA"):
        used = np.unique(a)
        rgb = np.asarray(palette or [], np.int64).reshape(-1, 3)
        if len(rgb) > int(used.max()) and all(rgb[i, 0] == rgb[i, 1] == rgb[i, 2] for i in used):
            return rgb[:, 0].astype(np.uint8)[a], GREY  # a grey palette: an 8-bit grey mask stored as P
        return a.astype(np.uint8), INDEX
    if mode not in ("1", "L", "LA", "RGB", "RGBA", "RGBX", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        raise DatasetError(f"mask file {path} has unsupported mode {mode} (use 8-bit grey, RGB or a palette PNG)")
    if a.dtype == np.bool_:
        return a.astype(np.uint8), GREY
    if a.dtype == np.uint8:
        return a, GREY
    if a.dtype.kind == "f" and not (np.all(np.isfinite(a)) and np.all(a == np.round(a))):
        raise DatasetError(f"mask file {path} holds non-integer float values (mode {mode}); masks hold labels")
    v = a.astype(np.int64)
    if v.min() < 0:
        raise DatasetError(f"mask file {path} holds negative values (min {v.min()}, mode {mode})")
    if v.max() <= 255:
        return v.astype(np.uint8), GREY
    if v.max() <= 65535 and not np.any(v % 257):
        return (v // 257).astype(np.uint8), GREY  # 8-bit levels stored in 16 bits (255 -> 65535, 128 -> 32896)
    nonzero = np.unique(v[v > 0])
    if len(nonzero) == 1:
        return ((v > 0) * 255).astype(np.uint8), GREY  # binary 0/N
    raise DatasetError(f"mask file {path} ({mode}) holds values {_some(np.unique(v))} that do not map to 8-bit "
                       "levels: expected a binary 0/N mask or 8-bit levels scaled by 257")


def _some(values: np.ndarray, n: int = 8) -> str:
    """``values`` (1-D) as a short list for a message: the first ``n``, then how many more."""
    vals = [int(x) for x in values[:n]]
    return f"{vals}" + (f" (+{len(values) - n} more)" if len(values) > n else "")


def read_gray(path: str | Path) -> np.ndarray:
    """uint8 HxW grey levels of a mask file (palette masks: their grey levels or indices, see :func:`read_mask`).

    Args:
        path: the mask file.

    Returns:
        uint8 HxW.

    Raises:
        DatasetError: see :func:`read_mask`.
    """
    return read_mask(path)[0]


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

