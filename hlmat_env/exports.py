"""Fine-tuning exports of expert trajectories: one sample per click step, as SegAgent trains its MLLM.

Each sample is the image with the mask *before* that click drawn as SegAgent's green overlay
(:func:`hlmat_env.render.overlay_mask`, alpha 0.5), saved as ``OUT/images/<episode>_<k>.png``; the user turn
is :func:`hlmat_env.codecs.build_instruction` (SegAgent's instruction plus the description); the answer is the
click written by a coordinate codec, e.g. ``Positive point: (381, 337)``, optionally prefixed with the IoU of
the mask before the click, ``Current IOU: 74, `` (the PRM variant).

Formats:

* ``llamafactory``: ``OUT/hlmat_sft.json`` in LLaMA-Factory's ShareGPT layout (one ``<image>`` per image) plus
  ``OUT/dataset_info.json``; use ``dataset_dir=OUT`` and ``dataset=hlmat_sft``.
* ``trl``: ``OUT/train.jsonl`` with conversational ``prompt``/``completion`` and ``images`` (paths relative
  to OUT); :func:`load_trl_dataset` returns the ``datasets.Dataset`` that TRL's ``SFTTrainer`` takes.
* ``segagent``: ``OUT/trajectories.json`` in SegAgent's schema (:func:`hlmat_env.trajectories.to_segagent`).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from PIL import Image

from hlmat_env.codecs import build_instruction, get_codec
from hlmat_env.datasets import make_dataset
from hlmat_env.datasets.base import read_image
from hlmat_env.errors import require
from hlmat_env.render import overlay_mask
from hlmat_env.trajectories import Trajectory, TrajectoryError, write_segagent

FORMATS = ("llamafactory", "trl", "segagent")
LLAMAFACTORY_NAME = "hlmat_sft"


class ImageSource:
    """Finds a trajectory's image: its ``image`` path if that file exists, else sample ``index`` of its
    ``dataset`` spec (generated datasets such as ``synthetic:val`` have no image files)."""

    def __init__(self) -> None:
        self._datasets: dict[str, Any] = {}

    def __call__(self, t: Trajectory) -> np.ndarray:
        if t.image and Path(t.image).is_file():
            image = read_image(t.image)
        elif t.dataset and t.index >= 0:
            if t.dataset not in self._datasets:
                self._datasets[t.dataset] = make_dataset(t.dataset)
            image = self._datasets[t.dataset][t.index].image
        else:
            raise TrajectoryError(f"episode {t.episode_id!r}: image {t.image!r} not found and no dataset spec to "
                                  "rebuild it from")
        if image.shape[:2] != (t.height, t.width):
            raise TrajectoryError(f"episode {t.episode_id!r}: image {t.image!r} is {image.shape[1]}x{image.shape[0]}, "
                                  f"the trajectory says {t.width}x{t.height}")
        return image


def _stem(episode_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", episode_id)[:80]
    return f"{safe}_{hashlib.sha1(episode_id.encode()).hexdigest()[:8]}"


def sft_steps(trajs: Iterable[Trajectory], out_dir: str | Path, *, coords: str = "segagent-qwen",
              with_iou: bool = False, images: ImageSource | None = None) -> Iterator[dict[str, str]]:
    """Write one overlay PNG per click step under ``out_dir/images`` and yield
    ``{"image": path relative to out_dir, "instruction": ..., "answer": ...}`` per step."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    codec = get_codec(coords)
    images = images or ImageSource()
    for t in trajs:
        if not t.clicks:
            continue
        image = images(t)
        instruction = build_instruction(t.caption)
        stem = _stem(t.episode_id)
        for k, step in enumerate(t.clicks):
            rel = f"images/{stem}_{k:02d}.png"
            Image.fromarray(overlay_mask(image, t.mask_before(k))).save(out_dir / rel, compress_level=3)
            iou = t.iou_before(k) if with_iou else None
            yield {"image": rel, "instruction": instruction,
                   "answer": codec.format(step.label_click, t.width, t.height, iou=iou)}


def export_llamafactory(trajs: Iterable[Trajectory], out_dir: str | Path, **kw: Any) -> int:
    """LLaMA-Factory ShareGPT dataset + ``dataset_info.json`` in ``out_dir``; returns the number of samples.
    Keyword arguments go to :func:`sft_steps` (``coords``, ``with_iou``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(out_dir / f"{LLAMAFACTORY_NAME}.json", "w", encoding="utf-8") as f:
        f.write("[")
        for s in sft_steps(trajs, out_dir, **kw):
            rec = {"messages": [{"role": "user", "content": "<image>" + s["instruction"]},
                                {"role": "assistant", "content": s["answer"]}],
                   "images": [s["image"]]}
            f.write((",\n" if n else "\n") + json.dumps(rec, ensure_ascii=False))
            n += 1
        f.write("\n]\n")
    info = {LLAMAFACTORY_NAME: {
        "file_name": f"{LLAMAFACTORY_NAME}.json", "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
    }}
    (out_dir / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return n


def export_trl(trajs: Iterable[Trajectory], out_dir: str | Path, **kw: Any) -> int:
    """``out_dir/train.jsonl`` in TRL's conversational prompt-completion vision format; returns the count."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(out_dir / "train.jsonl", "w", encoding="utf-8") as f:
        for s in sft_steps(trajs, out_dir, **kw):
            rec = {"prompt": [{"role": "user", "content": [{"type": "image"},
                                                           {"type": "text", "text": s["instruction"]}]}],
                   "completion": [{"role": "assistant", "content": [{"type": "text", "text": s["answer"]}]}],
                   "images": [s["image"]]}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def load_trl_dataset(out_dir: str | Path):
    """The TRL export as a ``datasets.Dataset`` whose ``images`` column holds PIL images (needs ``datasets``)."""
    datasets = require("datasets", "llm")
    out_dir = Path(out_dir).resolve()
    ds = datasets.load_dataset("json", data_files=str(out_dir / "train.jsonl"), split="train")
    ds = ds.map(lambda r: {"images": [str(out_dir / p) for p in r["images"]]})
    return ds.cast_column("images", datasets.Sequence(datasets.Image()))


def export(trajs: Iterable[Trajectory], fmt: str, out_dir: str | Path, *, coords: str = "segagent-qwen",
           with_iou: bool = False) -> int:
    """Dispatch to the exporter of ``fmt`` (one of :data:`FORMATS`); returns the number of samples written
    (click steps, or trajectories for ``segagent``)."""
    if fmt == "llamafactory":
        return export_llamafactory(trajs, out_dir, coords=coords, with_iou=with_iou)
    if fmt == "trl":
        return export_trl(trajs, out_dir, coords=coords, with_iou=with_iou)
    if fmt == "segagent":
        trajs = list(trajs)
        write_segagent(trajs, Path(out_dir) / "trajectories.json")
        return len(trajs)
    raise ValueError(f"export format must be one of {list(FORMATS)}, got {fmt!r}")
