"""Folder layouts of the interactive-segmentation benchmarks: ``images/`` + ``masks/`` matched by file stem.

GrabCut, Berkeley and DAVIS as distributed with RITM/SimpleClick use this layout. Mask values: 0 background,
255 (or 1) object, 128 the GrabCut "unknown" band (ignore, -1). Other grey values are thresholded at 128.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hlmat_env.datasets.base import Dataset, Sample, read_gray, read_image, register_dataset
from hlmat_env.errors import DatasetError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
IMAGE_DIRS = ("images", "img", "JPEGImages")
MASK_DIRS = ("masks", "gt", "Annotations")


def mask_to_target(raw: np.ndarray) -> np.ndarray:
    """int8 target (1 object, 0 background, -1 ignore) from an 8-bit benchmark mask."""
    if raw.max() <= 1:
        return raw.astype(np.int8)
    target = (raw > 128).astype(np.int8)
    target[raw == 128] = -1
    return target


def _first_dir(root: Path, names: tuple[str, ...]) -> Path:
    for n in names:
        if (root / n).is_dir():
            return root / n
    raise DatasetError(f"{root} has none of the folders {list(names)} (expected images/ and masks/)")


class FolderDataset(Dataset):
    """``images/NAME.ext`` + ``masks/NAME.png``; one object per image.

    Args:
        root: folder holding ``images/`` (or ``img/``, ``JPEGImages/``) and ``masks/`` (or ``gt/``, ``Annotations/``).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"dataset folder not found: {self.root}")
        img_dir, mask_dir = _first_dir(self.root, IMAGE_DIRS), _first_dir(self.root, MASK_DIRS)
        images = {p.stem: p for p in sorted(img_dir.iterdir()) if p.suffix.lower() in IMAGE_EXTS}
        masks = {p.stem: p for p in sorted(mask_dir.iterdir()) if p.suffix.lower() in IMAGE_EXTS}
        self.stems = sorted(set(images) & set(masks))
        if not self.stems:
            raise DatasetError(f"no image/mask pairs with matching file stems under {self.root}")
        self.images, self.masks = images, masks
        self.name = f"folder:{self.root}"

    def __len__(self) -> int:
        return len(self.stems)

    def sample_id(self, index: int) -> str:
        return self.stems[index]

    def load(self, index: int) -> Sample:
        stem = self.stems[index]
        image = read_image(self.images[stem])
        raw = read_gray(self.masks[stem])
        if raw.shape != image.shape[:2]:
            raise DatasetError(
                f"mask {self.masks[stem]} has shape {raw.shape}, image {self.images[stem]} has {image.shape[:2]}"
            )
        return Sample(image, mask_to_target(raw), "", stem, str(self.images[stem]))


def _folder(arg: str | None) -> FolderDataset:
    if not arg:
        raise DatasetError("the folder dataset needs a path: 'folder:PATH'")
    return FolderDataset(arg)


register_dataset("folder", _folder)
