"""Expert click trajectories: recording with SegAgent's rules, our JSONL files, and SegAgent's JSON schema.

A trajectory is the robot user (:meth:`HLMATEnv.expert_click`) annotating one sample from one start state
through the env's public API. SegAgent's recording rules are options of :func:`record_trajectory`: keep a
click only while the IoU strictly improves and stop at the first click that does not, stop once
IoU >= ``tau_stop`` (0.98) or after ``max_clicks`` clicks.

JSONL (one episode per line, ``version`` :data:`FORMAT_VERSION`)::

    {"version": 1, "episode_id": "2007_000033-1#empty", "sample_id": "2007_000033-1", "start": "empty",
     "image": "/data/voc/2007_000033.jpg", "dataset": "folder:/data/voc", "index": 0, "height": 366,
     "width": 500, "caption": "the plane", "target": <COCO RLE>, "segmenter": "default", "seed": 123,
     "start_iou": 0.0, "start_mask": null | <COCO RLE>,
     "clicks": [{"x": 250, "y": 180, "positive": true, "iou": 0.62, "mask": <COCO RLE after the click>}, ...]}

``x`` is the column and ``y`` the row, in pixels of the original image. ``start_mask`` is the mask before the
first click (null = empty). A click may carry ``"label": {"x", "y", "positive"}``: the demonstration for the
state before it when that is not the executed click (a DAgger-style record, :mod:`agents.star`: the policy's
own click was executed, the robot user's is the label); learners read :attr:`Step.label_click`. SegAgent's schema (``coor`` = ``[row, col]``) is written by :func:`to_segagent`
and read by :func:`from_segagent`; our extra fields travel in each record's ``"hlmat"`` block, which their
tools ignore, so JSONL -> SegAgent JSON -> JSONL is lossless.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from pycocotools import mask as mask_utils

from hlmat_env.actions import Click
from hlmat_env.errors import EmptyTarget, HLMATError  # noqa: F401 (EmptyTarget: re-exported)
from hlmat_env.masks import decode_rle, encode_rle

FORMAT_VERSION = 1
START_STATES = ("empty", "box", "degraded", "clicks")
"""Start states of a recording: the env's ``empty``/``box``/``degraded`` and ``clicks`` (the mask the segmenter
makes from 1-3 random positive clicks inside the target, then used as the env's ``initial_mask``)."""


class TrajectoryError(HLMATError, ValueError):
    """A trajectory record is malformed; the message names the file/line or the field."""


@dataclass
class Step:
    """One kept click: pixel ``x`` (column), ``y`` (row), its sign, the IoU and the mask (COCO RLE) after it;
    ``label``: the demonstrated click for the state before it, when another click than this one."""

    x: int
    y: int
    positive: bool
    iou: float
    mask: dict
    label: Click | None = None

    @property
    def click(self) -> Click:
        """The executed click."""
        return Click(self.x, self.y, self.positive)

    @property
    def label_click(self) -> Click:
        """What a learner imitates at the state before this step: ``label``, else the executed click."""
        return self.label if self.label is not None else self.click

    @property
    def label_json(self) -> dict[str, Any] | None:
        """``label`` as its JSON entry ``{"x", "y", "positive"}``, or None."""
        c = self.label
        return None if c is None else {"x": int(c.x), "y": int(c.y), "positive": bool(c.positive)}

    def to_json(self) -> dict[str, Any]:
        """The step as its JSON entry (``x``, ``y``, ``positive``, ``iou``, ``mask`` RLE, optional ``label``)."""
        d = {"x": self.x, "y": self.y, "positive": self.positive, "iou": self.iou, "mask": self.mask}
        if self.label is not None:
            d["label"] = self.label_json
        return d

    @classmethod
    def from_json(cls, c: dict[str, Any]) -> Step:
        """From a click entry; raises KeyError/TypeError/ValueError on a malformed one."""
        lab = c.get("label")
        label = None if lab is None else Click(int(lab["x"]), int(lab["y"]), bool(lab["positive"]))
        return cls(int(c["x"]), int(c["y"]), bool(c["positive"]), float(c["iou"]), c["mask"], label)


@dataclass
class Trajectory:
    """One recorded episode (see the module docstring for the JSONL field meanings)."""

    sample_id: str
    height: int
    width: int
    target: dict
    clicks: list[Step] = field(default_factory=list)
    caption: str = ""
    image: str = ""
    dataset: str = ""
    index: int = -1
    segmenter: str = ""
    start: str = "empty"
    start_iou: float = 0.0
    start_mask: dict | None = None
    seed: int | None = None
    episode_id: str = ""
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not self.episode_id:
            self.episode_id = f"{self.sample_id}#{self.start}"

    def mask_before(self, k: int) -> np.ndarray:
        """Bool HxW mask the annotator saw before click ``k`` (0-based): the start mask, then click k-1's."""
        if k > 0:
            return decode_rle(self.clicks[k - 1].mask)
        if self.start_mask is not None:
            return decode_rle(self.start_mask)
        return np.zeros((self.height, self.width), bool)

    def iou_before(self, k: int) -> float:
        """IoU of :meth:`mask_before` ``(k)``."""
        return self.clicks[k - 1].iou if k > 0 else self.start_iou

    def to_json(self) -> dict[str, Any]:
        """The trajectory as its JSON record (one line of a shard), steps included."""
        d = asdict(replace(self, clicks=[]))  # the steps write themselves: not copied by asdict first
        d["clicks"] = [s.to_json() for s in self.clicks]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str = "record") -> Trajectory:
        """Build from a JSONL record; raises :class:`TrajectoryError` naming ``where`` and the bad field."""
        if not isinstance(d, dict):
            raise TrajectoryError(f"{where}: expected a JSON object, got {type(d).__name__}")
        if d.get("version", FORMAT_VERSION) > FORMAT_VERSION:
            raise TrajectoryError(f"{where}: format version {d['version']} is newer than {FORMAT_VERSION}")
        missing = [k for k in ("sample_id", "height", "width", "target", "clicks") if k not in d]
        if missing:
            raise TrajectoryError(f"{where}: missing field(s) {missing}")
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in d.items() if k in known}
        try:
            kwargs["clicks"] = [Step.from_json(c) for c in d["clicks"]]
        except (KeyError, TypeError, ValueError) as e:
            raise TrajectoryError(f"{where}: bad click entry ({type(e).__name__}: {e}); "
                                  "expected {x, y, positive, iou, mask}") from None
        return cls(**kwargs)


# ---------------------------------------------------------------------------------------------- recording
def record_trajectory(env: Any, index: int, *, start: str = "empty", seed: int | None = None,
                      tau_stop: float = 0.98, max_clicks: int = 20, strict_improvement: bool = True,
                      segmenter_name: str = "", dataset_spec: str = "") -> Trajectory:
    """Let the robot user annotate sample ``index`` of ``env`` (a ``gym.make("HLMATEnv-v0", ...)`` env).

    Args:
        env: the env, wrapped or not; used through ``reset``, ``expert_click``, ``click`` and ``mask``.
        index: dataset index of the sample.
        start: one of :data:`START_STATES`.
        seed: seed of ``env.reset`` (makes ``degraded`` and ``clicks`` starts reproducible).
        tau_stop: stop once the IoU reaches this value.
        max_clicks: stop after this many kept clicks (the env's own budget also applies).
        strict_improvement: SegAgent's rule: a click that does not strictly raise the IoU ends the
            trajectory and is not kept. False keeps every click until ``tau_stop``/``max_clicks``.
        segmenter_name, dataset_spec: recorded as is (``dataset_spec`` lets exports reload the image).
    Raises:
        EmptyTarget: the sample has no object pixel. Dataset errors (unreadable image...) propagate.
    """
    if start not in START_STATES:
        raise ValueError(f"start must be one of {list(START_STATES)}, got {start!r}")
    u = env.unwrapped
    sample = u.dataset[index]  # the recorder is the robot user: it may see the target
    gt = sample.target > 0
    if not gt.any():
        raise EmptyTarget(f"sample {sample.sample_id!r} ({sample.image_ref}) has an empty target mask")
    options: dict[str, Any] = {"index": index}
    if start == "clicks":
        options["initial_mask"] = _random_clicks_mask(env, index, seed, gt)
    else:
        options["start"] = start
    _, info = env.reset(seed=seed, options=options)
    start_iou = iou = float(info["iou"])
    start_mask = None if start == "empty" else encode_rle(u.mask)
    steps: list[Step] = []
    while len(steps) < max_clicks and iou < tau_stop:
        click = u.expert_click()
        if click is None:
            break
        _, _, _, truncated, info = u.click(click)
        if strict_improvement and info["iou"] <= iou:
            break
        iou = float(info["iou"])
        steps.append(Step(int(click.x), int(click.y), bool(click.positive), iou, encode_rle(u.mask)))
        if truncated:
            break
    h, w = gt.shape
    return Trajectory(sample_id=sample.sample_id, height=h, width=w, target=encode_rle(gt), clicks=steps,
                      caption=sample.caption, image=sample.image_ref, dataset=dataset_spec, index=int(index),
                      segmenter=segmenter_name, start=start, start_iou=start_iou, start_mask=start_mask,
                      seed=seed)


def _random_clicks_mask(env: Any, index: int, seed: int | None, gt: np.ndarray) -> np.ndarray:
    """Mask the segmenter makes from 1-3 random positive clicks inside the target (SegAgent's extra start)."""
    env.reset(seed=seed, options={"index": index, "start": "empty"})
    u = env.unwrapped
    rng = u.np_random
    ys, xs = np.nonzero(gt)
    for i in rng.choice(len(xs), size=min(len(xs), int(rng.integers(1, 4))), replace=False):
        _, _, _, truncated, _ = u.click(Click(int(xs[i]), int(ys[i]), True))
        if truncated:
            break
    return u.mask


# ---------------------------------------------------------------------------------------------- JSONL
def dumps(traj: Trajectory) -> str:
    """One JSONL line (no trailing newline)."""
    return json.dumps(traj.to_json(), separators=(",", ":"))


def write_jsonl(trajs: Iterable[Trajectory], path: str | Path) -> Path:
    """Write trajectories one per line; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for t in trajs:
            f.write(dumps(t) + "\n")
    return path


def read_jsonl(path: str | Path) -> list[Trajectory]:
    """All trajectories of one JSONL file; errors name the file and line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise TrajectoryError(f"{path}:{n}: not valid JSON ({e})") from None
            out.append(Trajectory.from_json(d, f"{path}:{n}"))
    return out


def iter_trajectories(path: str | Path) -> Iterator[Trajectory]:
    """Trajectories of a JSONL file, a SegAgent JSON file, or every ``*.jsonl`` of a folder (sorted), except
    the folder's ``errors.jsonl`` (the bad-sample log that ``hlmat generate`` writes beside its shards)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.glob("*.jsonl") if f.name != "errors.jsonl")
        if not files:
            raise TrajectoryError(f"no *.jsonl trajectory files in {p}")
        for f in files:
            yield from read_jsonl(f)
    elif p.suffix == ".json":
        yield from read_segagent(p)
    elif p.is_file():
        yield from read_jsonl(p)
    else:
        raise TrajectoryError(f"trajectory file or folder not found: {p}")


# ---------------------------------------------------------------------------------------------- SegAgent JSON
def _rle_box_area(rle: dict) -> tuple[list[int], int]:
    r = {"size": rle["size"], "counts": rle["counts"].encode("ascii") if isinstance(rle["counts"], str)
         else rle["counts"]}
    if isinstance(r["counts"], list):
        r = mask_utils.frPyObjects(r, *r["size"])
    return [int(round(v)) for v in mask_utils.toBbox(r)], int(mask_utils.area(r))


def _label_entry(s: Step) -> dict[str, Any]:
    """Our DAgger label in a SegAgent click entry (``hlmat_label``, x/y as in our JSONL), which their tools ignore."""
    return {"hlmat_label": s.label_json} if s.label is not None else {}


def to_segagent(trajs: Iterable[Trajectory], info: dict | None = None) -> dict[str, Any]:
    """SegAgent's released schema (REFERENCE.md §2): ``coor`` is ``[row, col]``, one record per trajectory."""
    data = []
    for t in trajs:
        box, area = _rle_box_area(t.target)
        clicks = []
        for k, s in enumerate(t.clicks):
            cbox, carea = _rle_box_area(s.mask)
            clicks.append({"idx": k, "coor": [s.y, s.x], "is_positive": s.positive, "mask": s.mask,
                           "box": cbox, "area": carea, "iou": s.iou, **_label_entry(s)})
        extra = {k: v for k, v in t.to_json().items()
                 if k not in ("image", "height", "width", "caption", "target", "clicks")}
        data.append({"image_name": t.image, "height": t.height, "width": t.width,
                     "gt_ann": {"object_id": t.sample_id, "caption": [t.caption] if t.caption else [],
                                "segmentation": t.target, "bbox": box, "area": area},
                     "clicks_list": clicks, "hlmat": extra})
    return {"info": {"description": "HLMAT expert trajectories", "hlmat_version": FORMAT_VERSION, **(info or {})},
            "data": data}


def from_segagent(doc: dict[str, Any], where: str = "SegAgent JSON") -> list[Trajectory]:
    """Trajectories from SegAgent's schema (theirs or ours). Records without our ``"hlmat"`` block get
    ``sample_id = "{image_name}-{object_id}"``, the first caption, an empty start and ``start_iou`` 0."""
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise TrajectoryError(f"{where}: expected an object with a 'data' list (SegAgent's schema)")
    out = []
    for n, rec in enumerate(doc["data"]):
        at = f"{where} data[{n}]"
        try:
            ann, h, w = rec["gt_ann"], int(rec["height"]), int(rec["width"])
            steps = []
            for c in rec.get("clicks_list", []):
                row, col = c["coor"]
                if isinstance(row, float) and isinstance(col, float) and row < 1 and col < 1:
                    row, col = row * h, col * w  # some released files store normalised coordinates
                steps.append(Step.from_json({"x": int(col), "y": int(row), "positive": c["is_positive"],
                                             "iou": c["iou"], "mask": c["mask"], "label": c.get("hlmat_label")}))
            captions = ann.get("caption") or []
            caption = captions if isinstance(captions, str) else (captions[0] if captions else "")
            base = {"sample_id": f"{rec['image_name']}-{ann.get('object_id', n)}", "height": h, "width": w,
                    "target": ann["segmentation"], "caption": caption, "image": str(rec["image_name"])}
        except (KeyError, TypeError, ValueError) as e:
            raise TrajectoryError(f"{at}: malformed record ({type(e).__name__}: {e})") from None
        extra = rec.get("hlmat") or {}
        d = {**base, **extra, "clicks": []}
        t = Trajectory.from_json(d, at)
        t.clicks = steps
        out.append(t)
    return out


def write_segagent(trajs: Iterable[Trajectory], path: str | Path, info: dict | None = None) -> Path:
    """Write trajectories as one SegAgent trajectory JSON file (:func:`to_segagent`), parents created.

    Args:
        trajs: the trajectories.
        path: the JSON file to write.
        info: the file's ``info`` object.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_segagent(trajs, info)), encoding="utf-8")
    return path


def read_segagent(path: str | Path) -> list[Trajectory]:
    """Read a SegAgent trajectory JSON file (:func:`from_segagent`).

    Raises:
        TrajectoryError: missing file, invalid JSON or a malformed record, naming the file.
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrajectoryError(f"SegAgent JSON file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise TrajectoryError(f"{path}: not valid JSON ({e})") from None
    return from_segagent(doc, str(path))
