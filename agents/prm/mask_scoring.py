"""Annotation filtering with the PRM: estimate the IoU of given masks (COCO results format), flag bad ones."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from agents.prm.scorer import PRM, load_prm
from hlmat_env.masks import decode_rle


def _image_index(dataset: Any, image_ids: set) -> dict[Any, int]:
    """Map COCO ``image_id`` values to dataset indices: by ``meta['image_id']``, else ``sample_id``, else
    an integer index."""
    by_meta: dict[Any, int] = {}
    by_sid: dict[str, int] = {}
    for i in range(len(dataset)):
        by_sid[dataset.sample_id(i)] = i
    out: dict[Any, int] = {}
    missing = [v for v in image_ids if str(v) not in by_sid]
    if missing:
        for i in range(len(dataset)):
            meta_id = dataset[i].meta.get("image_id")
            if meta_id is not None:
                by_meta[meta_id] = i
    for v in image_ids:
        if v in by_meta:
            out[v] = by_meta[v]
        elif str(v) in by_sid:
            out[v] = by_sid[str(v)]
        elif isinstance(v, int) and 0 <= v < len(dataset):
            out[v] = v
        else:
            raise ValueError(f"image_id {v!r} matches no sample of the dataset (meta image_id, sample_id or index)")
    return out


def score_coco_results(prm: str | PRM, dataset: Any, masks: str | Path, out: str | Path | None = None, *,
                       threshold: float = 0.75) -> list[dict]:
    """Add ``prm_iou`` (IoU estimate in [0, 1]) and ``low_quality`` (``prm_iou < threshold``) to every record
    of a COCO results JSON; writes them to ``out`` (JSON list) when given and returns them."""
    from hlmat_env.datasets import make_dataset

    try:
        rows = json.loads(Path(masks).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"masks file not found: {masks}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{masks} is not valid JSON: {e}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "image_id" in r and "segmentation" in r
                                              for r in rows):
        raise ValueError(f"{masks} must be a COCO results list of {{image_id, segmentation, ...}} records")
    scorer = load_prm(prm)
    ds = make_dataset(dataset)
    index = _image_index(ds, {r["image_id"] for r in rows})
    groups: dict[int, list[int]] = defaultdict(list)
    for n, r in enumerate(rows):
        groups[index[r["image_id"]]].append(n)
    for i, ns in groups.items():
        sample = ds[i]
        ms = []
        for n in ns:
            m = decode_rle(rows[n]["segmentation"])
            if m.shape != sample.image.shape[:2]:
                raise ValueError(f"record {n} (image_id {rows[n]['image_id']!r}): mask {m.shape} != image "
                                 f"{sample.image.shape[:2]}")
            ms.append(m)
        for n, s in zip(ns, scorer.score_batch(sample.image, ms, sample.caption)):
            rows[n] = {**rows[n], "prm_iou": float(s), "low_quality": bool(s < threshold)}
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(rows) + "\n")
    return rows
