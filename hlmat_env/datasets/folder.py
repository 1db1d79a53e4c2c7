"""Folder layouts of the interactive-segmentation benchmarks: ``images/`` + ``masks/`` matched by file stem.

GrabCut, Berkeley and DAVIS as distributed with RITM/SimpleClick use this layout. Spec:
``folder:PATH[?strict=1][&captions=class]``.

**Captions.** Empty, unless ``captions=class`` and the folder holds a class list ``meta.jsonl`` (one JSON
object per line: ``stem`` and ``class`` or ``category``; ``_`` in a class name reads as a space; optional
image key ``image_id``, ``coco_val2017_image_id`` or ``image``, as in COCO-MVal): captions are then generated
by :mod:`hlmat_env.datasets.instance_captions` from the class and the layout of the folder's instances of
that class on the same image ("the zebra on the left"; "the airplane" when it is the only one). Only the
instances the folder holds are known: another instance of the class that the image shows but the folder
lacks is not taken into account. Without an image key every stem counts as its own image. A stem missing
from ``meta.jsonl`` is an error.

**Pairing.** Image and mask are matched by file stem (``images/x.jpg`` + ``masks/x.png``). An image without a
mask, a mask without an image, or two files with one stem in a folder (``x.jpg`` and ``x.png``: the one whose
name sorts last is used, so ``x.png``) are reported by a :class:`~hlmat_env.errors.DatasetWarning` naming the
files; with ``strict=1`` they are a :class:`~hlmat_env.errors.DatasetError` instead. Nothing is dropped or
chosen silently.

**Mask rule** (one sample is one object; target 1 object, 0 background, -1 ignore). The file is read by
:func:`~hlmat_env.datasets.base.read_mask`: grey levels from 8-bit grey, 16-bit (8-bit levels scaled by
257, or binary 0/N), bilevel and grey-palette files, and from the **first (red) channel** of RGB/RGBA masks,
as RITM reads them (alpha ignored); palette indices from colour-palette PNGs. Then, with ``V`` the nonzero
values present:

* grey levels:

  - one value (0/255, 0/1, 0/N...): binary, any nonzero value is the object;
  - ``{128, 255}``: GrabCut: 255 object, 128 the "unknown" band (ignore);
  - 255 and one value below 128 (VOC stored as grey, e.g. 0/1/255): that value is the object, 255 the void
    border (ignore);
  - several values below 128, with or without 255 (a label image with several objects): refused;
  - otherwise (levels above 128 other than 255, e.g. anti-aliased edges): RITM's rule, ``> 128`` object,
    ``== 128`` ignore, ``< 128`` background;

* palette indices (VOC): 0 background, 255 void (ignore), exactly one other index the object; several
  object indices are refused, naming the indices found.

A mask with no object pixel under these rules (all 0, or a coloured object with 0 in the red channel) raises
:class:`~hlmat_env.errors.EmptyTarget` naming the file. Every refusal is a
:class:`~hlmat_env.errors.DatasetError` (raised when the sample is loaded) naming the file and the values.
Images of any size are accepted, down to 1x1 (the default segmenter handles them); a mask whose size differs
from its image's is refused.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from hlmat_env.datasets.base import (GREY, INDEX, Dataset, Sample, _some, query_options, read_image, read_mask,
                                     register_dataset)
from hlmat_env.datasets.instance_captions import GeneratedCaption, describe_group
from hlmat_env.errors import DatasetError, DatasetWarning, EmptyTarget

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
IMAGE_DIRS = ("images", "img", "JPEGImages")
MASK_DIRS = ("masks", "gt", "Annotations")
VOID = 255
"""The VOC void label (ignore) of palette masks and of grey masks that hold 255 and one small label."""


def mask_to_target(raw: np.ndarray, where: str = "mask", kind: str = GREY) -> np.ndarray:
    """int8 target (1 object, 0 background, -1 ignore) from mask values, by the module docstring's rule.

    Args:
        raw: uint8 HxW values (grey levels, or palette indices when ``kind`` is ``"index"``).
        where: the file, for error messages.
        kind: ``"grey"`` or ``"index"`` (see :func:`~hlmat_env.datasets.base.read_mask`).

    Returns:
        int8 HxW: 1 object, 0 background, -1 ignore.

    Raises:
        EmptyTarget: no object pixel.
        DatasetError: several object values (a multi-object label image), naming ``where`` and the values.
    """
    raw = np.asarray(raw)
    values = np.unique(raw)
    nonzero = values[values > 0]
    if kind == INDEX:
        objects = nonzero[nonzero != VOID]
        if len(objects) == 0:
            raise EmptyTarget(f"{where}: palette mask has no object index (indices {_some(values)}; 0 = background, "
                              f"{VOID} = void)")
        if len(objects) > 1:
            raise DatasetError(f"{where}: palette mask holds several object indices {_some(objects)} (0 = "
                               f"background, {VOID} = void); one sample is one object")
        target = (raw == objects[0]).astype(np.int8)
        target[raw == VOID] = -1
        return target
    if len(nonzero) == 0:
        raise EmptyTarget(f"{where}: mask has no object pixel (all 0)")
    small = nonzero[nonzero < 128]
    if len(nonzero) == 1:  # binary: any nonzero value is the object
        return (raw > 0).astype(np.int8)
    if set(nonzero.tolist()) == {128, 255}:  # GrabCut: 128 the unknown band
        target = (raw == 255).astype(np.int8)
        target[raw == 128] = -1
        return target
    if len(small) == len(nonzero) - (VOID in nonzero):  # only small labels, and maybe 255
        if len(small) > 1:
            raise DatasetError(f"{where}: mask holds several object labels {_some(small)}"
                               + (f" and {VOID} (void)" if VOID in nonzero else "")
                               + "; one sample is one object")
        target = (raw == small[0]).astype(np.int8)  # VOC stored as grey: 255 the void border
        target[raw == VOID] = -1
        return target
    target = (raw > 128).astype(np.int8)  # RITM's rule for grey levels (anti-aliased edges)
    target[raw == 128] = -1
    if not (target == 1).any():
        raise EmptyTarget(f"{where}: mask has no pixel above 128 (values {_some(values)})")
    return target


def _first_dir(root: Path, names: tuple[str, ...]) -> Path:
    for n in names:
        if (root / n).is_dir():
            return root / n
    raise DatasetError(f"{root} has none of the folders {list(names)} (expected images/ and masks/)")


def _by_stem(folder: Path) -> tuple[dict[str, Path], list[list[Path]]]:
    """Image files of ``folder`` by stem (the name sorting last wins) and the groups sharing a stem."""
    groups: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."):
            groups.setdefault(p.stem, []).append(p)
    return {k: v[-1] for k, v in groups.items()}, [v for v in groups.values() if len(v) > 1]


def _names(paths: list[Path], n: int = 10) -> str:
    shown = ", ".join(p.name for p in paths[:n])
    return shown + (f" (+{len(paths) - n} more)" if len(paths) > n else "")


class FolderDataset(Dataset):
    """``images/NAME.ext`` + ``masks/NAME.png``; one object per image (see the module docstring's rules).

    Args:
        root: folder holding ``images/`` (or ``img/``, ``JPEGImages/``) and ``masks/`` (or ``gt/``, ``Annotations/``).
        strict: raise instead of warn about orphan files and duplicate stems.
        captions: ``""`` (no captions) or ``"class"`` (generated from ``meta.jsonl``; see the module docstring).

    Attributes:
        orphan_images: images without a mask (skipped). orphan_masks: masks without an image (skipped).
        duplicates: groups of files sharing a stem in one folder (the last of each group is used).

    Raises:
        DatasetError: the folder or its sub-folders are missing, no pair matches, or (``strict``) orphans or
            duplicates exist, naming them.
    """

    def __init__(self, root: str | Path, strict: bool = False, captions: str = ""):
        self.root = Path(root)
        if captions not in ("", "class"):
            raise DatasetError(f"folder option captions must be 'class', got {captions!r}")
        if not self.root.is_dir():
            raise DatasetError(f"dataset folder not found: {self.root}")
        img_dir, mask_dir = _first_dir(self.root, IMAGE_DIRS), _first_dir(self.root, MASK_DIRS)
        images, dup_images = _by_stem(img_dir)
        masks, dup_masks = _by_stem(mask_dir)
        self.stems = sorted(set(images) & set(masks))
        self.images, self.masks, self.strict = images, masks, bool(strict)
        self.orphan_images = [images[s] for s in sorted(set(images) - set(masks))]
        self.orphan_masks = [masks[s] for s in sorted(set(masks) - set(images))]
        self.duplicates = dup_images + dup_masks
        problems = []
        if self.orphan_images:
            problems.append(f"{len(self.orphan_images)} image(s) in {img_dir} without a mask in {mask_dir} "
                            f"(skipped): {_names(self.orphan_images)}")
        if self.orphan_masks:
            problems.append(f"{len(self.orphan_masks)} mask(s) in {mask_dir} without an image in {img_dir} "
                            f"(skipped): {_names(self.orphan_masks)}")
        for group in self.duplicates:
            problems.append(f"{group[0].parent} has {len(group)} files with the stem {group[0].stem!r}: "
                            f"{_names(group)} (using {group[-1].name})")
        if problems and (self.strict or not self.stems):
            raise DatasetError(f"folder dataset {self.root}: " + "; ".join(problems)
                               + ("" if self.stems else "; no image/mask pairs with matching file stems"))
        if not self.stems:
            raise DatasetError(f"no image/mask pairs with matching file stems under {self.root}")
        if problems:
            warnings.warn(f"folder dataset {self.root}: " + "; ".join(problems)
                          + " (pass ?strict=1 to make this an error)", DatasetWarning, stacklevel=2)
        opts = (["strict=1"] if self.strict else []) + (["captions=class"] if captions else [])
        self.name = f"folder:{self.root}" + ("?" + "&".join(opts) if opts else "")
        self.captions = captions
        self._groups: dict[str, tuple[str, list[str]]] = {}  # stem -> (class, stems of its class and image)
        self._generated: dict[str, GeneratedCaption] = {}
        if captions:
            self._read_classes()

    def _read_classes(self) -> None:
        """Read ``meta.jsonl`` and group the stems by image and class (see the module docstring)."""
        path = self.root / "meta.jsonl"
        rows: dict[str, tuple[str, object]] = {}
        try:
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    row = json.loads(line)
                    cls = row.get("class", row.get("category")) if isinstance(row, dict) else None
                    if not isinstance(cls, str) or "stem" not in row:
                        raise DatasetError(f"{path} line {n}: needs 'stem' and a 'class' (or 'category') string")
                    image = next((row[k] for k in ("image_id", "coco_val2017_image_id", "image") if k in row),
                                 ("stem", row["stem"]))
                    rows[str(row["stem"])] = (cls.replace("_", " ").strip(), image)
        except FileNotFoundError as e:
            raise DatasetError(f"captions=class needs a class list {path} (one JSON object per line with "
                               "'stem' and 'class' or 'category')") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(f"{path} is not valid JSON lines: {e}") from e
        missing = [s for s in self.stems if s not in rows]
        if missing:
            raise DatasetError(f"{path} has no class for {len(missing)} stem(s): {', '.join(missing[:10])}")
        groups: dict[tuple[str, str], list[str]] = {}
        for stem in self.stems:
            cls, image = rows[stem]
            groups.setdefault((cls, json.dumps(image, sort_keys=True, default=str)), []).append(stem)
        for (cls, _), stems in groups.items():
            for stem in stems:
                self._groups[stem] = (cls, stems)

    def generated_caption(self, index: int) -> GeneratedCaption:
        """The generated caption of sample ``index`` (``captions="class"`` only); reads the masks of the other
        instances of its class and image when there are any.

        Args:
            index: sample index in ``[0, len(self))``.

        Returns:
            The :class:`~hlmat_env.datasets.instance_captions.GeneratedCaption`.

        Raises:
            DatasetError: the dataset was built without ``captions="class"``, or a mask cannot be read.
        """
        if not self.captions:
            raise DatasetError(f"{self.name} has no generated captions: add ?captions=class to the spec")
        stem = self.stems[index]
        if stem not in self._generated:
            cls, stems = self._groups[stem]
            masks = [] if len(stems) == 1 else [self._target(s) == 1 for s in stems]
            caps = describe_group(cls, masks) if masks else [GeneratedCaption(f"the {cls}", True, 1, "lone")]
            self._generated.update(zip(stems, caps))
        return self._generated[stem]

    def _target(self, stem: str) -> np.ndarray:
        raw, kind = read_mask(self.masks[stem])
        return mask_to_target(raw, f"sample {stem!r}: mask {self.masks[stem]}", kind)

    def __len__(self) -> int:
        return len(self.stems)

    def sample_id(self, index: int) -> str:
        """The file stem of sample ``index``."""
        return self.stems[index]

    def files(self, index: int) -> list[str]:
        """``[image file, mask file]`` of sample ``index``."""
        stem = self.stems[index]
        return [str(self.images[stem]), str(self.masks[stem])]

    def load(self, index: int) -> Sample:
        """Read sample ``index``: the image and its mask by the module docstring's rule.

        Raises:
            DatasetError: an unreadable, truncated or mismatched file, or a mask that the rule refuses,
                naming the file (:class:`~hlmat_env.errors.EmptyTarget` for a mask without object).
        """
        stem = self.stems[index]
        image = read_image(self.images[stem])
        raw, kind = read_mask(self.masks[stem])
        if raw.shape != image.shape[:2]:
            raise DatasetError(
                f"mask {self.masks[stem]} has shape {raw.shape}, image {self.images[stem]} has {image.shape[:2]}"
            )
        target = mask_to_target(raw, f"sample {stem!r}: mask {self.masks[stem]}", kind)
        if not self.captions:
            return Sample(image, target, "", stem, str(self.images[stem]))
        gen = self.generated_caption(index)
        meta = {"class": self._groups[stem][0], "caption_unambiguous": gen.unambiguous, "caption_how": gen.how,
                "caption_group_size": gen.group_size}
        return Sample(image, target, gen.text, stem, str(self.images[stem]), meta)


def _folder(arg: str | None) -> FolderDataset:
    """``folder:PATH[?strict=1][&captions=class]``."""
    if not arg:
        raise DatasetError("the folder dataset needs a path: 'folder:PATH'")
    path, _, query = arg.partition("?")
    opts = query_options(query, "folder", {"strict": "0|1", "captions": "class"})
    if opts.get("strict", "0") not in ("0", "1"):
        raise DatasetError(f"folder option strict must be 0 or 1, got {opts['strict']!r}")
    return FolderDataset(path, strict=opts.get("strict") == "1", captions=opts.get("captions", ""))


register_dataset("folder", _folder)
