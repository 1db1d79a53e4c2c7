"""Real annotation formats: COCO instances JSON, RefCOCO/+/g in the ``refer`` layout, SegAgent trajectory JSON.

Specs (an ``?images=DIR`` suffix overrides where images are looked up; ``&crowd=1`` keeps COCO crowd regions):

* ``coco:ANNFILE[?images=DIR][&captions=generated]`` -- one sample per non-crowd annotation (polygons,
  compressed or uncompressed RLE), caption = category name. Images default to the COCO layout
  ``ROOT/annotations/instances_val2017.json`` -> ``ROOT/val2017/``, else the annotation file's folder.
  ``captions=generated``: referring captions from the category and the layout of the image's same-category
  instances (:mod:`hlmat_env.datasets.instance_captions`: "the dog on the left", "the larger of the two
  cups"), computed from every annotation of the image (boxes, else decoded masks), samples or not, small ones
  included. Crowd regions: a non-crowd instance is described among the non-crowd instances of its category;
  when the image also holds a crowd region of that category (an unknown number of further instances) its
  caption is flagged ambiguous. A crowd sample (``crowd=1``) reads "the group of PLURAL" (unambiguous when
  it is the image's only crowd region of its category, else "one of the groups of PLURAL"). The flag and the
  kind of caption go to ``meta["caption_unambiguous"]``, ``meta["caption_how"]``.
* ``refcoco:ROOT[,DATASET[,SPLITBY[,SPLIT]]][?images=DIR]`` -- the ``refer`` layout: ``ROOT/DATASET/refs(SPLITBY).p``
  and ``ROOT/DATASET/instances.json``, images in ``ROOT/images/mscoco/images/train2014``. DATASET is
  ``refcoco`` (default), ``refcoco+`` or ``refcocog``; SPLITBY defaults to ``unc`` (``umd`` for refcocog);
  SPLIT defaults to ``train`` (``val``, ``testA``, ``testB``, ``test``, or ``all``). Each referring sentence
  is one sample with that sentence as caption.
* ``segagent:FILE[?images=DIR]`` -- SegAgent's trajectory JSON used as a dataset: one sample per record and
  caption, target = ``gt_ann.segmentation``. Images relative to DIR (default: the file's folder); an integer
  ``image_name`` is a COCO train2014 id, a name without extension gets ``.jpg`` (as SegAgent's tools do).

Targets have no ignore label here: 1 object, 0 background.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from hlmat_env.datasets.base import Dataset, Sample, query_options, read_image, register_dataset
from hlmat_env.datasets.instance_captions import GeneratedCaption, describe_instances, plural
from hlmat_env.errors import DatasetError
from hlmat_env.masks import decode_rle, polygons_to_mask

REFER_IMAGES = Path("images/mscoco/images/train2014")
DEFAULT_SPLITBY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}


def split_options(arg: str | None, kind: str) -> tuple[str, dict[str, str]]:
    """``"PATH?images=DIR&crowd=1"`` -> ``("PATH", {"images": "DIR", "crowd": "1"})``."""
    if not arg:
        raise DatasetError(f"the {kind} dataset needs a path: see hlmat_env.datasets.coco for the spec")
    main, _, query = arg.partition("?")
    allowed = {"images": "DIR", "crowd": "0|1"} | ({"captions": "name|generated"} if kind == "coco" else {})
    return main, query_options(query, kind, allowed)


def segmentation_to_mask(segm: Any, height: int, width: int, where: str) -> np.ndarray:
    """Bool HxW mask of a COCO ``segmentation`` (polygon list, uncompressed or compressed RLE)."""
    try:
        if isinstance(segm, list):
            polys = [p for p in segm if len(p) >= 6]
            return polygons_to_mask(polys, height, width) if polys else np.zeros((height, width), bool)
        if isinstance(segm, dict):
            if isinstance(segm.get("counts"), list):
                return mask_utils.decode(mask_utils.frPyObjects(segm, height, width)).astype(bool)
            return decode_rle(segm)
    except (TypeError, ValueError, KeyError) as e:
        raise DatasetError(f"{where}: cannot decode segmentation ({type(e).__name__}: {e})") from e
    raise DatasetError(f"{where}: segmentation must be a polygon list or an RLE dict, got {type(segm).__name__}")


def _load_json(path: Path, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise DatasetError(f"{what} not found: {path}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{what} {path} is not valid JSON: {e}") from e


def _is_size(value: Any) -> bool:
    """A positive int (not a bool): what an image height or width must be."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class _PlainUnpickler(pickle.Unpickler):
    """Loads only plain containers/strings/numbers: a refs pickle needs nothing else, and refusing classes
    keeps a tampered file from running code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a refs file holds only plain data")


def load_refs(path: Path) -> list[dict]:
    """The ``refs(SPLITBY).p`` list of the ``refer`` API (Python 2 or 3 pickles)."""
    try:
        with open(path, "rb") as f:
            refs = _PlainUnpickler(f, encoding="latin1").load()
    except FileNotFoundError as e:
        raise DatasetError(f"refs file not found: {path}") from e
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise DatasetError(f"cannot read refs file {path}: {e}") from e
    if not isinstance(refs, list):
        raise DatasetError(f"refs file {path} must hold a list of refs, got {type(refs).__name__}")
    return refs


class _Instances:
    """Index of a COCO instances JSON: images, annotations and category names by id."""

    def __init__(self, path: Path):
        doc = _load_json(path, "COCO annotation file")
        try:
            self.images = {im["id"]: im for im in doc["images"]}
            self.anns = {a["id"]: a for a in doc["annotations"]}
            self.categories = {c["id"]: c["name"] for c in doc.get("categories", [])}
        except (KeyError, TypeError, AttributeError) as e:
            raise DatasetError(f"{path} is not a COCO instances file (missing {e})") from e
        self.path = path
        for ann_id, ann in self.anns.items():  # checked once here, not when a sample is first read
            missing = [k for k in ("image_id", "segmentation") if k not in ann]
            if missing:
                raise DatasetError(f"{path}: annotation {ann_id} lacks field(s) {missing}")
        for image_id, info in self.images.items():
            missing = [k for k in ("file_name", "height", "width") if k not in info]
            if missing:
                raise DatasetError(f"{path}: image {image_id} lacks field(s) {missing}")
            if not (_is_size(info["height"]) and _is_size(info["width"])):
                raise DatasetError(f"{path}: image {image_id} has size {info['width']!r}x{info['height']!r}; "
                                   "width and height must be positive integers")

    def files(self, ann_id: int, image_dir: Path) -> list[str]:
        """``[image file, annotation file]`` of annotation ``ann_id`` (the image only when it is known)."""
        info = self.images.get(self.anns[ann_id].get("image_id"))
        return ([str(image_dir / str(info["file_name"]))] if info else []) + [str(self.path)]

    def load(self, ann_id: int, image_dir: Path, sample_id: str, caption: str, meta: dict) -> Sample:
        """Read annotation ``ann_id`` as a sample (image from ``image_dir``).

        Raises:
            DatasetError: unknown image, unreadable image, a size that differs from the file's, or an
                undecodable segmentation, naming the file and the annotation.
        """
        ann = self.anns[ann_id]
        info = self.images.get(ann["image_id"])
        if info is None:
            raise DatasetError(f"{self.path}: annotation {ann_id} refers to unknown image {ann['image_id']}")
        file = image_dir / str(info["file_name"])
        image = read_image(file)
        h, w = int(info["height"]), int(info["width"])
        if image.shape[:2] != (h, w):
            raise DatasetError(f"image {file} has size {image.shape[1]}x{image.shape[0]}, {self.path} says {w}x{h}")
        mask = segmentation_to_mask(ann["segmentation"], h, w, f"{self.path} annotation {ann_id}")
        return Sample(image, mask.astype(np.int8), caption, sample_id, str(file), meta)


class CocoDataset(Dataset):
    """COCO instances JSON: one sample per annotation, caption = category name.

    Args:
        ann_file: ``instances_*.json``.
        image_dir: image folder (default: see the module docstring).
        crowd: also keep ``iscrowd`` annotations.
        captions: ``"name"`` (the category name) or ``"generated"`` (see the module docstring).
    """

    def __init__(self, ann_file: str | Path, image_dir: str | Path | None = None, crowd: bool = False,
                 captions: str = "name"):
        if captions not in ("name", "generated"):
            raise DatasetError(f"coco option captions must be 'name' or 'generated', got {captions!r}")
        self.inst = _Instances(Path(ann_file))
        self.image_dir = Path(image_dir) if image_dir else self._default_image_dir(Path(ann_file))
        self.ann_ids = sorted(a["id"] for a in self.inst.anns.values() if crowd or not a.get("iscrowd", 0))
        self.captions = captions
        self._generated = self._generate_captions() if captions == "generated" else {}
        self.name = (f"coco:{ann_file}?images={self.image_dir}" + ("&crowd=1" if crowd else "")
                     + ("&captions=generated" if captions == "generated" else ""))

    def _shape(self, ann: dict) -> Any:
        """The annotation's ``[x, y, w, h]`` box, else its decoded mask (for caption layouts)."""
        box = ann.get("bbox")
        if isinstance(box, (list, tuple)) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box):
            return list(box)
        info = self.inst.images.get(ann["image_id"])
        if info is None:
            raise DatasetError(f"{self.inst.path}: annotation {ann['id']} refers to unknown image {ann['image_id']}")
        return segmentation_to_mask(ann["segmentation"], int(info["height"]), int(info["width"]),
                                    f"{self.inst.path} annotation {ann['id']}")

    def _generate_captions(self) -> dict[int, GeneratedCaption]:
        """Generated captions of every annotation, by annotation id (see the module docstring)."""
        by_image: dict[Any, list[dict]] = {}
        for ann_id in sorted(self.inst.anns):
            ann = self.inst.anns[ann_id]
            by_image.setdefault(ann["image_id"], []).append(ann)
        out: dict[int, GeneratedCaption] = {}
        for anns in by_image.values():
            name = {a["id"]: str(self.inst.categories.get(a.get("category_id"), "object")) for a in anns}
            plain = [a for a in anns if not a.get("iscrowd", 0)]
            crowds = [a for a in anns if a.get("iscrowd", 0)]
            area = {a["id"]: (float(a["area"]) if isinstance(a.get("area"), (int, float)) else None) for a in anns}
            caps = describe_instances([(name[a["id"]], self._shape(a), area[a["id"]]) for a in plain])
            crowd_cats = [name[a["id"]] for a in crowds]
            for a, c in zip(plain, caps):
                if name[a["id"]] in crowd_cats:
                    c = GeneratedCaption(c.text, False, c.group_size, c.how)
                out[a["id"]] = c
            for a in crowds:
                n = crowd_cats.count(name[a["id"]])
                many = plural(name[a["id"]])
                text = f"the group of {many}" if n == 1 else f"one of the groups of {many}"
                out[a["id"]] = GeneratedCaption(text, n == 1, n, "crowd")
        return out

    def generated_caption(self, index: int) -> GeneratedCaption:
        """The generated caption of sample ``index`` (only with ``captions="generated"``), without reading pixels.

        Args:
            index: sample index in ``[0, len(self))``.

        Returns:
            The :class:`~hlmat_env.datasets.instance_captions.GeneratedCaption`.

        Raises:
            DatasetError: the dataset was built without ``captions="generated"``.
        """
        if not self._generated:
            raise DatasetError(f"{self.name} has no generated captions: add ?captions=generated to the spec")
        return self._generated[self.ann_ids[index]]

    @staticmethod
    def _default_image_dir(ann_file: Path) -> Path:
        split = ann_file.stem.split("_", 1)[-1]  # instances_val2017 -> val2017
        candidate = ann_file.parent.parent / split
        return candidate if candidate.is_dir() else ann_file.parent

    def __len__(self) -> int:
        return len(self.ann_ids)

    def sample_id(self, index: int) -> str:
        """``coco-ANNID``."""
        return f"coco-{self.ann_ids[index]}"

    def files(self, index: int) -> list[str]:
        """``[image file, annotation file]`` of sample ``index``."""
        return self.inst.files(self.ann_ids[index], self.image_dir)

    def load(self, index: int) -> Sample:
        """Read annotation ``index`` (sorted by annotation id) with its category name as caption.

        Raises:
            DatasetError: unreadable image, size mismatch or undecodable segmentation, naming the file.
        """
        ann = self.inst.anns[self.ann_ids[index]]
        caption = self.inst.categories.get(ann.get("category_id"), "")
        meta = {"ann_id": ann["id"], "image_id": ann["image_id"], "category_id": ann.get("category_id")}
        if self._generated:
            gen = self._generated[ann["id"]]
            caption = gen.text
            meta.update(caption_unambiguous=gen.unambiguous, caption_how=gen.how, caption_group_size=gen.group_size)
        return self.inst.load(ann["id"], self.image_dir, self.sample_id(index), caption, meta)


class RefCocoDataset(Dataset):
    """RefCOCO / RefCOCO+ / RefCOCOg in the ``refer`` layout; one sample per referring sentence.

    Args:
        root: folder holding ``DATASET/refs(SPLITBY).p`` and ``DATASET/instances.json``.
        dataset: ``refcoco``, ``refcoco+`` or ``refcocog``.
        split_by: refs file variant (default per dataset: unc / umd).
        split: ``train``, ``val``, ``testA``, ``testB``, ``test`` or ``all``.
        image_dir: default ``ROOT/images/mscoco/images/train2014``.
    """

    def __init__(self, root: str | Path, dataset: str = "refcoco", split_by: str | None = None,
                 split: str = "train", image_dir: str | Path | None = None):
        root = Path(root)
        split_by = split_by or DEFAULT_SPLITBY.get(dataset, "unc")
        refs = load_refs(root / dataset / f"refs({split_by}).p")
        self.inst = _Instances(root / dataset / "instances.json")
        self.image_dir = Path(image_dir) if image_dir else root / REFER_IMAGES
        self.prefix = f"{dataset}-{split_by}"
        self.refs_file = root / dataset / f"refs({split_by}).p"
        self.items: list[tuple[dict, dict]] = []
        for n, ref in enumerate(refs):
            if not isinstance(ref, dict) or "split" not in ref:
                raise DatasetError(f"{self.refs_file}: refs[{n}] is not a ref with a 'split' (refer layout expected)")
            if split == "all" or ref["split"] == split:
                self.items.extend((ref, s) for s in _checked_sentences(ref, n, self.refs_file, self.inst))
        seen: dict[str, int] = {}
        for k in range(len(self.items)):
            sid = self.sample_id(k)
            if sid in seen:
                raise DatasetError(f"{self.refs_file}: two sentences have the sample id {sid!r} (the same "
                                   "ref_id and sent_id); sample ids must be unique")
            seen[sid] = k
        if not self.items:
            splits = sorted({str(r.get("split")) for r in refs if isinstance(r, dict)})
            raise DatasetError(f"no refs with split {split!r} in {root / dataset} (splits present: {splits})")
        self.name = f"refcoco:{root},{dataset},{split_by},{split}?images={self.image_dir}"

    def __len__(self) -> int:
        return len(self.items)

    def sample_id(self, index: int) -> str:
        """``DATASET-SPLITBY-REFID-SENTID``."""
        ref, sent = self.items[index]
        return f"{self.prefix}-{ref['ref_id']}-{sent['sent_id']}"

    def files(self, index: int) -> list[str]:
        """``[image file, instances.json, refs file]`` of sample ``index``."""
        return self.inst.files(self.items[index][0]["ann_id"], self.image_dir) + [str(self.refs_file)]

    def load(self, index: int) -> Sample:
        """Read referring sentence ``index``: the ref's annotation as target, the sentence as caption.

        Raises:
            DatasetError: unreadable image or size mismatch, naming the file.
        """
        ref, sent = self.items[index]
        if ref["ann_id"] not in self.inst.anns:
            raise DatasetError(f"{self.inst.path}: no annotation {ref['ann_id']} for ref {ref['ref_id']}")
        meta = {k: ref.get(k) for k in ("ref_id", "ann_id", "image_id", "split", "category_id")}
        meta["sent_id"] = sent["sent_id"]
        return self.inst.load(ref["ann_id"], self.image_dir, self.sample_id(index), sent["sent"], meta)


def _checked_sentences(ref: dict, n: int, refs_file: Path, inst: _Instances) -> list[dict]:
    """The sentences of ``ref`` (``refs[n]``) after checking every field a sample reads.

    Raises:
        DatasetError: a missing or mistyped field (``ref_id``, ``ann_id``, ``sentences``, a sentence's
            ``sent_id`` and ``sent``), or an ``ann_id`` that ``instances.json`` lacks, naming the file and the ref.
    """
    where = f"{refs_file}: ref {ref.get('ref_id', '?')!r} (refs[{n}])"
    missing = [k for k in ("ref_id", "ann_id", "sentences") if k not in ref]
    if missing:
        raise DatasetError(f"{where} lacks field(s) {missing} (refer layout expected)")
    if ref["ann_id"] not in inst.anns:
        raise DatasetError(f"{where}: no annotation {ref['ann_id']!r} in {inst.path}")
    sents = ref["sentences"]
    if not isinstance(sents, list):
        raise DatasetError(f"{where}: 'sentences' must be a list, got {type(sents).__name__}")
    for k, sent in enumerate(sents):
        if not isinstance(sent, dict):
            raise DatasetError(f"{where}: sentences[{k}] must be a dict, got {type(sent).__name__}")
        missing = [f for f in ("sent_id", "sent") if f not in sent]
        if missing:
            raise DatasetError(f"{where}: sentences[{k}] lacks field(s) {missing}")
        if not isinstance(sent["sent"], str):
            raise DatasetError(f"{where}: sentences[{k}]['sent'] must be a str, got {type(sent['sent']).__name__}")
    return sents


class SegAgentDataset(Dataset):
    """SegAgent's trajectory JSON as a dataset: one sample per (record, caption)."""

    def __init__(self, file: str | Path, image_dir: str | Path | None = None):
        self.file = Path(file)
        doc = _load_json(self.file, "SegAgent JSON file")
        if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
            raise DatasetError(f"{self.file}: expected an object with a 'data' list (SegAgent's schema)")
        self.records = doc["data"]
        self.image_dir = Path(image_dir) if image_dir else self.file.parent
        self.items: list[tuple[int, str, str]] = []
        for n, rec in enumerate(self.records):
            try:
                ann = rec["gt_ann"]
                caps = ann.get("caption") or [""]
                caps = [caps] if isinstance(caps, str) else caps
                hl = rec.get("hlmat") or {}
                base = hl.get("sample_id") or f"{rec['image_name']}-{ann.get('object_id', n)}"
                missing = [k for k in ("height", "width") if k not in rec] + (
                    [] if "segmentation" in ann else ["gt_ann.segmentation"])
            except (KeyError, TypeError, AttributeError) as e:
                raise DatasetError(f"{self.file} data[{n}]: malformed record ({type(e).__name__}: {e})") from e
            if missing:
                raise DatasetError(f"{self.file} data[{n}]: record lacks field(s) {missing}")
            if not (_is_size(rec["height"]) and _is_size(rec["width"])):
                raise DatasetError(f"{self.file} data[{n}]: size {rec['width']!r}x{rec['height']!r}; width and "
                                   "height must be positive integers")
            if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
                raise DatasetError(f"{self.file} data[{n}]: gt_ann.caption must be a str or a list of str")
            self.items.extend((n, c, base if len(caps) == 1 else f"{base}-{k}") for k, c in enumerate(caps))
        self.name = f"segagent:{self.file}?images={self.image_dir}"

    def __len__(self) -> int:
        return len(self.items)

    def sample_id(self, index: int) -> str:
        """The record's ``hlmat.sample_id``, else ``IMAGENAME-OBJECTID`` (``-K`` per caption when several)."""
        return self.items[index][2]

    def files(self, index: int) -> list[str]:
        """``[image file, JSON file]`` of sample ``index``."""
        return [str(self.image_path(self.records[self.items[index][0]]["image_name"])), str(self.file)]

    def image_path(self, image_name: Any) -> Path:
        """The image file of a record's ``image_name`` (see the module docstring).

        Args:
            image_name: an int (a COCO train2014 id) or a file name, with or without extension.

        Returns:
            An absolute path, or one under ``image_dir``.
        """
        if isinstance(image_name, int):
            return self.image_dir / f"COCO_train2014_{image_name:012d}.jpg"
        p = Path(str(image_name))
        p = p if p.suffix else p.with_suffix(".jpg")
        return p if p.is_absolute() else self.image_dir / p

    def load(self, index: int) -> Sample:
        """Read sample ``index``: the record's image and ``gt_ann.segmentation``, one of its captions.

        Raises:
            DatasetError: unreadable image, size mismatch or undecodable segmentation, naming the file.
        """
        n, caption, sid = self.items[index]
        rec = self.records[n]
        file = self.image_path(rec["image_name"])
        image = read_image(file)
        h, w = int(rec["height"]), int(rec["width"])
        if image.shape[:2] != (h, w):
            raise DatasetError(f"image {file} has size {image.shape[1]}x{image.shape[0]}, {self.file} says {w}x{h}")
        mask = segmentation_to_mask(rec["gt_ann"]["segmentation"], h, w, f"{self.file} data[{n}]")
        return Sample(image, mask.astype(np.int8), caption, sid, str(file), {"record": n})


def _coco(arg: str | None) -> CocoDataset:
    path, opts = split_options(arg, "coco")
    return CocoDataset(path, opts.get("images"), crowd=opts.get("crowd", "0") == "1",
                       captions=opts.get("captions", "name"))


def _refcoco(arg: str | None) -> RefCocoDataset:
    main, opts = split_options(arg, "refcoco")
    parts = main.split(",")
    if len(parts) > 4:
        raise DatasetError(f"refcoco spec takes ROOT[,DATASET[,SPLITBY[,SPLIT]]], got {main!r}")
    root, dataset, split_by, split = (parts + [None] * 3)[:4]
    return RefCocoDataset(root, dataset or "refcoco", split_by or None, split or "train", opts.get("images"))


def _segagent(arg: str | None) -> SegAgentDataset:
    path, opts = split_options(arg, "segagent")
    return SegAgentDataset(path, opts.get("images"))


register_dataset("coco", _coco)
register_dataset("refcoco", _refcoco)
register_dataset("segagent", _segagent)
