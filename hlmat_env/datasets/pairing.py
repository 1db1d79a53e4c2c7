"""Images and masks paired by file stem (``images/x.jpg`` + ``masks/x.png``): one home for the layouts that
hold one object per image (``folder:``, and ``grabcut:``, ``berkeley:``, ``davis:``, ``coco-mval:`` of
:mod:`hlmat_env.datasets.benchmarks`), with the two mask rules they share (RITM's GrabCut rule and
"any nonzero value is the object")."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hlmat_env.datasets.base import Dataset, _some, read_image, read_mask
from hlmat_env.errors import DatasetError, EmptyTarget

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
"""File endings read as images or masks (any case)."""


def ritm_grabcut_rule(raw: np.ndarray, where: str = "mask") -> np.ndarray:
    """GrabCut/Berkeley targets: ``> 128`` object, ``== 128`` ignore, ``< 128`` background.

    Args:
        raw: uint8 HxW mask values.
        where: the file, for error messages.

    Returns:
        int8 HxW target.

    Raises:
        EmptyTarget: no value above 128.
    """
    target = (raw > 128).astype(np.int8)
    target[raw == 128] = -1
    if not (target == 1).any():
        raise EmptyTarget(f"{where}: mask has no pixel above 128 (values {_some(np.unique(raw))})")
    return target


def nonzero_rule(raw: np.ndarray, where: str = "mask") -> np.ndarray:
    """DAVIS/COCO-MVal targets: any nonzero value is the object, no ignore band.

    Args:
        raw: uint8 HxW mask values.
        where: the file, for error messages.

    Returns:
        int8 HxW target.

    Raises:
        EmptyTarget: the mask is all 0.
    """
    target = (raw > 0).astype(np.int8)
    if not target.any():
        raise EmptyTarget(f"{where}: mask has no object pixel (all 0)")
    return target


def by_stem(folder: Path) -> tuple[dict[str, Path], list[list[Path]]]:
    """Image-like files of ``folder`` by stem (the name sorting last wins) and the groups sharing a stem.

    Args:
        folder: the folder (hidden files are skipped).

    Returns:
        ``({stem: file}, [files of each stem held by two or more files])``.
    """
    groups: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."):
            groups.setdefault(p.stem, []).append(p)
    return {k: v[-1] for k, v in groups.items()}, [v for v in groups.values() if len(v) > 1]


class StemPairs(Dataset):
    """A dataset of image/mask files paired by stem: one sample per stem of ``stems`` (sorted), read from
    ``images[stem]`` and ``masks[stem]``; a subclass sets the three and implements ``load``."""

    stems: list[str]
    images: dict[str, Path]
    masks: dict[str, Path]

    def __len__(self) -> int:
        return len(self.stems)

    def sample_id(self, index: int) -> str:
        """The file stem of sample ``index``."""
        return self.stems[index]

    def files(self, index: int) -> list[str]:
        """``[image file, mask file]`` of sample ``index``."""
        stem = self.stems[index]
        return [str(self.images[stem]), str(self.masks[stem])]

    def read_pair(self, stem: str, where: str) -> tuple[np.ndarray, np.ndarray, str]:
        """The image (uint8 HxWx3) and the raw mask values of ``stem`` with their kind
        (:func:`~hlmat_env.datasets.base.read_mask`).

        Args:
            stem: the sample's stem.
            where: the mask as error messages name it (``"mask PATH"``...).

        Raises:
            DatasetError: an unreadable file, or a mask whose size is not the image's (``"{where} has
                shape ..."``).
        """
        image = read_image(self.images[stem])
        raw, kind = read_mask(self.masks[stem])
        if raw.shape != image.shape[:2]:
            raise DatasetError(f"{where} has shape {raw.shape}, image {self.images[stem]} has {image.shape[:2]}")
        return image, raw, kind


__all__ = ["IMAGE_EXTS", "StemPairs", "by_stem", "nonzero_rule", "ritm_grabcut_rule"]
