"""The standard interactive-segmentation sets read in their own layouts, as RITM's evaluation reads them.

Specs (``ROOT`` is the folder holding the sub-folders below; ``hlmat data fetch NAME --root DIR`` prints the
exact spec of what it unpacked):

* ``grabcut:ROOT``: ``data_GT/NAME.{jpg,bmp,...}`` + ``boundary_GT/NAME.bmp``;
* ``berkeley:ROOT``: ``images/NAME.jpg`` + ``masks/NAME.png``;
* ``davis:ROOT``: ``img/NAME.jpg`` + ``gt/NAME.png``;
* ``coco-mval:ROOT``: ``img/NAME.jpg`` + ``gt/NAME.png`` (the DAVIS layout);
* ``pascalvoc:ROOT[,SPLIT]``: ``JPEGImages/NAME.jpg`` + ``SegmentationObject/NAME.png`` +
  ``ImageSets/Segmentation/SPLIT.txt`` (default split ``val``);
* ``sbd:ROOT[,SPLIT]``: ``img/NAME.jpg`` + ``inst/NAME.mat`` + ``SPLIT.txt`` (default split ``val``).

**Mask rules** (target 1 object, 0 background, -1 ignore). Mask files are read by
:func:`~hlmat_env.datasets.base.read_mask` (grey levels; the first, red, channel of RGB files; the indices
of colour-palette PNGs). These follow RITM's dataset classes as we know them; the points below that are our
reading of RITM rather than of a published specification are marked *assumed*.

The two rules of the one-object sets, :func:`~hlmat_env.datasets.pairing.ritm_grabcut_rule` and
:func:`~hlmat_env.datasets.pairing.nonzero_rule`, live with the stem pairing they share with ``folder:``.

* GrabCut and Berkeley (RITM's ``GrabCutDataset``, which ``BerkeleyDataset`` subclasses): ``> 128`` object,
  ``== 128`` ignore (GrabCut's unknown band around the boundary), ``< 128`` background. One sample per image,
  id = the file stem.
* DAVIS and COCO-MVal (RITM's ``DavisDataset``): any nonzero value is the object; no ignore band (assumed:
  RITM takes the maximum over the colour channels, we take the first channel, the same for grey masks).
  One sample per image.
* PascalVOC: ``SegmentationObject`` palette PNGs; every object index ``k`` (1-254) of an image is one sample
  with id ``NAME#k``; index 255 (the void border) is ignored; the split file lists the image names.
* SBD: ``inst/NAME.mat`` holds ``GTinst.Segmentation`` (instance ids, read with ``scipy.io.loadmat``); every
  nonzero id ``k`` is one sample with id ``NAME#k``; SBD has no ignore label.

Building a per-instance dataset (VOC, SBD) reads every mask of the split once to count the instances.
Images without a mask are skipped with a :class:`~hlmat_env.errors.DatasetWarning` naming them; a missing
folder, split file or an empty set is a :class:`~hlmat_env.errors.DatasetError`.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from hlmat_env.datasets.base import Dataset, Sample, read_image, read_mask, register_dataset
from hlmat_env.datasets.pairing import IMAGE_EXTS, StemPairs, by_stem, nonzero_rule, ritm_grabcut_rule
from hlmat_env.errors import DatasetError, DatasetWarning

VOID = 255
"""The PascalVOC void label (ignored)."""


def _need_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what}: folder not found: {path}")
    return path


class PairedDataset(StemPairs):
    """One object per image: ``ROOT/IMAGES/NAME.*`` + ``ROOT/MASKS/NAME.*`` paired by stem.

    Args:
        root: the set's folder.
        kind: the spec kind (``grabcut``, ``berkeley``, ``davis``, ``coco-mval``), for ``name`` and messages.
        images: image sub-folder name.
        masks: mask sub-folder name.
        rule: ``rule(raw, where) -> target`` applied to the mask values.

    Raises:
        DatasetError: a folder is missing or no image has a mask.
    """

    def __init__(self, root: str | Path, kind: str, images: str, masks: str,
                 rule: Callable[[np.ndarray, str], np.ndarray]):
        self.root, self.kind, self.rule = Path(root), kind, rule
        what = f"{kind} dataset {self.root}"
        _need_dir(self.root, what)
        imgs = by_stem(_need_dir(self.root / images, f"{what} (expected {images}/ and {masks}/)"))[0]
        msks = by_stem(_need_dir(self.root / masks, f"{what} (expected {images}/ and {masks}/)"))[0]
        self.stems = sorted(set(imgs) & set(msks))
        self.images, self.masks = imgs, msks
        self.orphan_images = [imgs[s] for s in sorted(set(imgs) - set(msks))]
        if not self.stems:
            raise DatasetError(f"{what}: no image in {images}/ has a mask in {masks}/ with the same file stem")
        if self.orphan_images:
            warnings.warn(f"{what}: {len(self.orphan_images)} image(s) without a mask in {masks}/ (skipped): "
                          + ", ".join(p.name for p in self.orphan_images[:10]), DatasetWarning, stacklevel=3)
        self.name = f"{kind}:{self.root}"

    def load(self, index: int) -> Sample:
        """Read sample ``index`` (image and mask by the set's rule).

        Raises:
            DatasetError: an unreadable file or a size mismatch, naming the file.
        """
        s = self.stems[index]
        where = f"{self.kind} sample {s!r}: mask {self.masks[s]}"
        image, raw, _ = self.read_pair(s, where)
        return Sample(image, self.rule(raw, where), "", s, str(self.images[s]))


class InstanceDataset(Dataset):
    """One sample per object instance of a label image: ids ``NAME#k`` (base of PascalVOC and SBD).

    Subclasses set ``self.image_dir``, ``self.names`` and implement :meth:`label_file` and :meth:`labels`,
    then call :meth:`_index`.
    """

    kind = "instances"
    ignore: int | None = None

    def label_file(self, name: str) -> Path:
        """The label file of image ``name``."""
        raise NotImplementedError

    def labels(self, name: str) -> np.ndarray:
        """Integer HxW instance labels of image ``name`` (0 background)."""
        raise NotImplementedError

    def _index(self) -> None:
        self.items: list[tuple[str, int]] = []
        missing = []
        for n in self.names:
            if not self.label_file(n).is_file():
                missing.append(n)
                continue
            lab = self.labels(n)
            for k in np.unique(lab):
                if k != 0 and k != self.ignore:
                    self.items.append((n, int(k)))
        if missing:
            warnings.warn(f"{self.name}: {len(missing)} listed image(s) without a label file (skipped): "
                          + ", ".join(missing[:10]), DatasetWarning, stacklevel=3)
        if not self.items:
            raise DatasetError(f"{self.name}: no object instance in the {len(self.names)} listed image(s)")

    def _image_file(self, name: str) -> Path:
        p = self.image_dir / f"{name}.jpg"
        if p.is_file():
            return p
        for ext in IMAGE_EXTS:
            if (self.image_dir / f"{name}{ext}").is_file():
                return self.image_dir / f"{name}{ext}"
        return p  # read_image names it as missing

    def __len__(self) -> int:
        return len(self.items)

    def sample_id(self, index: int) -> str:
        """``NAME#k``: the image name and the instance's label value."""
        n, k = self.items[index]
        return f"{n}#{k}"

    def files(self, index: int) -> list[str]:
        """``[image file, label file]`` of sample ``index``."""
        n = self.items[index][0]
        return [str(self._image_file(n)), str(self.label_file(n))]

    def load(self, index: int) -> Sample:
        """Read sample ``index``: the image, and the target of instance ``k`` (the ignore label as -1).

        Raises:
            DatasetError: an unreadable file or a size mismatch, naming the file.
        """
        n, k = self.items[index]
        image = read_image(self._image_file(n))
        lab = self.labels(n)
        if lab.shape != image.shape[:2]:
            raise DatasetError(f"{self.kind} sample {n}#{k}: labels {self.label_file(n)} have shape {lab.shape}, "
                               f"image {self._image_file(n)} has {image.shape[:2]}")
        target = (lab == k).astype(np.int8)
        if self.ignore is not None:
            target[lab == self.ignore] = -1
        return Sample(image, target, "", f"{n}#{k}", str(self._image_file(n)), {"instance": k})


def _split_names(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{what}: split file not found: {path}")
    names = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"{what}: split file {path} lists no image")
    return names


class PascalVOCDataset(InstanceDataset):
    """PascalVOC ``SegmentationObject``: one sample per object index, 255 (void) ignored.

    Args:
        root: the ``VOC2012`` folder (with ``JPEGImages/``, ``SegmentationObject/``, ``ImageSets/``).
        split: the name of a list in ``ImageSets/Segmentation/`` (``train``, ``val``, ``trainval``).

    Raises:
        DatasetError: a folder or the split file is missing, or no instance is found.
    """

    kind, ignore = "pascalvoc", VOID

    def __init__(self, root: str | Path, split: str = "val"):
        self.root, self.split = Path(root), split
        self.name = f"pascalvoc:{self.root},{split}"
        _need_dir(self.root, self.name)
        self.image_dir = _need_dir(self.root / "JPEGImages", self.name)
        self.label_dir = _need_dir(self.root / "SegmentationObject", self.name)
        self.names = _split_names(self.root / "ImageSets" / "Segmentation" / f"{split}.txt", self.name)
        self._index()

    def label_file(self, name: str) -> Path:
        """``SegmentationObject/NAME.png``."""
        return self.label_dir / f"{name}.png"

    def labels(self, name: str) -> np.ndarray:
        """The palette indices of ``SegmentationObject/NAME.png``."""
        return read_mask(self.label_file(name))[0]


class SBDDataset(InstanceDataset):
    """SBD ``inst/NAME.mat`` (``GTinst.Segmentation``): one sample per instance id; no ignore label.

    Args:
        root: the ``benchmark_RELEASE/dataset`` folder (with ``img/``, ``inst/``, ``train.txt``, ``val.txt``).
        split: ``train`` or ``val`` (any ``SPLIT.txt`` in ``root``).

    Raises:
        DatasetError: a folder or the split file is missing, a ``.mat`` file has no ``GTinst.Segmentation``, or
            no instance is found.
    """

    kind = "sbd"

    def __init__(self, root: str | Path, split: str = "val"):
        self.root, self.split = Path(root), split
        self.name = f"sbd:{self.root},{split}"
        _need_dir(self.root, self.name)
        self.image_dir = _need_dir(self.root / "img", self.name)
        self.label_dir = _need_dir(self.root / "inst", self.name)
        self.names = _split_names(self.root / f"{split}.txt", self.name)
        self._index()

    def label_file(self, name: str) -> Path:
        """``inst/NAME.mat``."""
        return self.label_dir / f"{name}.mat"

    def labels(self, name: str) -> np.ndarray:
        """``GTinst.Segmentation`` of ``inst/NAME.mat`` as int32 HxW."""
        from scipy.io import loadmat

        path = self.label_file(name)
        try:
            m = loadmat(str(path), squeeze_me=True, struct_as_record=False)
            seg = getattr(m["GTinst"], "Segmentation")
        except FileNotFoundError as e:
            raise DatasetError(f"sbd label file not found: {path}") from e
        except (KeyError, AttributeError) as e:
            raise DatasetError(f"sbd label file {path} has no GTinst.Segmentation") from e
        except Exception as e:  # scipy raises ValueError/TypeError/MatReadError on corrupt files
            raise DatasetError(f"cannot read sbd label file {path}: {e}") from e
        seg = np.asarray(seg)
        if seg.ndim != 2:
            raise DatasetError(f"sbd label file {path}: GTinst.Segmentation has shape {seg.shape}, expected HxW")
        return seg.astype(np.int32)


def _root_split(arg: str | None, kind: str, default: str) -> tuple[str, str]:
    """``ROOT[,SPLIT]`` of a spec."""
    if not arg:
        raise DatasetError(f"the {kind} dataset needs a path: '{kind}:ROOT[,SPLIT]'")
    root, comma, split = arg.rpartition(",")
    if not comma or "/" in split or not split:
        return arg, default
    return root, split


def _paired(kind: str, images: str, masks: str, rule: Callable[[np.ndarray, str], np.ndarray]):
    def factory(arg: str | None) -> PairedDataset:
        if not arg:
            raise DatasetError(f"the {kind} dataset needs a path: '{kind}:ROOT'")
        return PairedDataset(arg, kind, images, masks, rule)
    factory.__doc__ = f"``{kind}:ROOT``: ``{images}/`` + ``{masks}/``."
    return factory


register_dataset("grabcut", _paired("grabcut", "data_GT", "boundary_GT", ritm_grabcut_rule))
register_dataset("berkeley", _paired("berkeley", "images", "masks", ritm_grabcut_rule))
register_dataset("davis", _paired("davis", "img", "gt", nonzero_rule))
register_dataset("coco-mval", _paired("coco-mval", "img", "gt", nonzero_rule))
register_dataset("pascalvoc", lambda arg: PascalVOCDataset(*_root_split(arg, "pascalvoc", "val")))
register_dataset("sbd", lambda arg: SBDDataset(*_root_split(arg, "sbd", "val")))
