"""The embedded dataset: procedurally generated scenes with referring descriptions.

Each scene (160x120 by default) has a textured, noisy background with clutter and 3-6 overlapping objects of
different shapes, colours, sizes and textures. One visible object is the target; its description names
attributes and, when they do not single it out, a spatial relation to another object ("the small red triangle
left of the blue disc"). Same-colour distractors are added on purpose, so colour thresholding cannot solve it.
Everything is a pure function of ``(seed, split, index)``: the same sample in every process.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from hlmat_env.datasets.base import Dataset, Sample, query_options, register_dataset
from hlmat_env.errors import DatasetError

COLOURS = {
    "red": (205, 45, 40), "green": (50, 165, 60), "blue": (45, 80, 200), "yellow": (225, 205, 50),
    "purple": (130, 60, 170), "orange": (235, 130, 35), "white": (235, 235, 230), "cyan": (60, 190, 205),
}
SHAPES = ("disc", "square", "triangle", "diamond", "ring", "star", "bar")
SIZES = {"small": (7, 11), "medium": (12, 17), "large": (18, 26)}
TEXTURES = ("plain", "striped", "dotted", "shaded")
SPLITS = {"train": (0, 2000), "val": (1, 200)}


@dataclass
class _Object:
    shape: str
    colour: str
    size: str
    texture: str
    cx: float
    cy: float
    mask: np.ndarray  # full silhouette, before occlusion


def _silhouette(shape: str, cx: float, cy: float, r: float, angle: float, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    m = np.zeros((h, w), np.uint8)
    c = (int(round(cx)), int(round(cy)))

    def poly(k: int, radii: list[float]) -> np.ndarray:
        t = angle + np.arange(k * len(radii)) * 2 * np.pi / (k * len(radii))
        rr = np.tile(radii, k)
        return np.stack([cx + rr * np.cos(t), cy + rr * np.sin(t)], 1).round().astype(np.int32)

    if shape == "disc":
        cv2.circle(m, c, int(r), 1, -1)
    elif shape == "ring":
        cv2.circle(m, c, int(r), 1, -1)
        cv2.circle(m, c, max(2, int(r * 0.5)), 0, -1)
    elif shape == "square":
        cv2.fillPoly(m, [poly(4, [r * 1.15])], 1)
    elif shape == "diamond":
        p = poly(4, [r * 1.2]).astype(np.float64)
        p[:, 1] = cy + (p[:, 1] - cy) * 1.4
        cv2.fillPoly(m, [p.round().astype(np.int32)], 1)
    elif shape == "triangle":
        cv2.fillPoly(m, [poly(3, [r * 1.3])], 1)
    elif shape == "star":
        cv2.fillPoly(m, [poly(5, [r * 1.3, r * 0.55])], 1)
    elif shape == "bar":
        rect = ((cx, cy), (r * 2.6, r * 0.9), np.degrees(angle))
        cv2.fillPoly(m, [cv2.boxPoints(rect).round().astype(np.int32)], 1)
    return m.astype(bool)


def _paint(canvas: np.ndarray, obj: _Object, rng: np.random.Generator) -> None:
    base = np.array(COLOURS[obj.colour], np.float32) + rng.normal(0, 8, 3)
    h, w = canvas.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    if obj.texture == "striped":
        period, theta = rng.uniform(4, 7), rng.uniform(0, np.pi)
        phase = (xx * np.cos(theta) + yy * np.sin(theta)) / period
        shade = np.where((phase % 1.0) < 0.5, 1.0, 0.55)
    elif obj.texture == "dotted":
        shade = np.where(((xx // 4) + (yy // 4)) % 2 == 0, 1.0, 0.7)
    elif obj.texture == "shaded":
        shade = 0.6 + 0.5 * np.clip(1 - np.hypot(xx - obj.cx, yy - obj.cy) / 30.0, 0, 1)
    else:
        shade = np.ones((h, w))
    colour = np.clip(base[None, None, :] * shade[..., None], 0, 255)
    canvas[obj.mask] = colour[obj.mask]


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    a, b = rng.uniform(40, 200, 3), rng.uniform(40, 200, 3)
    t = np.linspace(0, 1, w)[None, :, None] if rng.random() < 0.5 else np.linspace(0, 1, h)[:, None, None]
    bg = a * (1 - t) + b * t + np.zeros((h, w, 3))
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w, 3)).astype(np.float32), (0, 0), rng.uniform(3, 8))
    bg = bg + noise / (noise.std() + 1e-6) * rng.uniform(8, 22)
    for _ in range(rng.integers(3, 9)):  # clutter: lines and small blobs in scene colours
        col = tuple(float(v) for v in COLOURS[rng.choice(list(COLOURS))])
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if rng.random() < 0.5:
            p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(bg, p1, p2, col, int(rng.integers(1, 3)))
        else:
            cv2.circle(bg, p1, int(rng.integers(2, 5)), col, -1)
    return bg


def _relation(a: _Object, b: _Object) -> str:
    dx, dy = a.cx - b.cx, a.cy - b.cy
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def _describe(objs: list[_Object], t: int, rng: np.random.Generator) -> str:
    """Shortest attribute phrase that singles out object ``t``; a relation when attributes do not suffice."""
    me = objs[t]
    keys = [("shape",), ("colour", "shape"), ("size", "colour", "shape"), ("size", "texture", "colour", "shape")]

    def phrase(o: _Object, k: tuple[str, ...]) -> str:
        return " ".join(getattr(o, a) for a in k)

    def unique(k: tuple[str, ...], i: int) -> bool:
        return sum(phrase(o, k) == phrase(objs[i], k) for o in objs) == 1

    start = int(rng.integers(0, 2))  # sometimes more words than needed, as people write
    for k in keys[start:]:
        if unique(k, t):
            desc = f"the {phrase(me, k)}"
            break
    else:
        desc = f"the {phrase(me, keys[1])}"
    anchors = [i for i in range(len(objs)) if i != t and unique(("colour", "shape"), i)]
    ambiguous = not any(unique(k, t) for k in keys)
    if anchors and (ambiguous or rng.random() < 0.5):
        # nearest uniquely-named object as the anchor
        j = min(anchors, key=lambda i: np.hypot(objs[i].cx - me.cx, objs[i].cy - me.cy))
        desc += f" {_relation(me, objs[j])} the {phrase(objs[j], ('colour', 'shape'))}"
    return desc


OBJECTS = (3, 6)
"""Objects per scene (inclusive range) of the standard splits."""


def make_scene(rng: np.random.Generator, width: int = 160, height: int = 120,
               objects: tuple[int, int] = OBJECTS) -> tuple[np.ndarray, np.ndarray, str]:
    """One scene with ``objects[0]``-``objects[1]`` objects: (uint8 HxWx3 image, int8 HxW target, caption)."""
    h, w = height, width
    for _ in range(100):
        canvas = _background(rng, h, w)
        n = int(rng.integers(objects[0], objects[1] + 1))
        objs: list[_Object] = []
        for i in range(n):
            colour = objs[0].colour if (i == 1 and rng.random() < 0.7) else str(rng.choice(list(COLOURS)))
            size = str(rng.choice(list(SIZES)))
            r = rng.uniform(*SIZES[size])
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            shape = str(rng.choice(SHAPES))
            m = _silhouette(shape, cx, cy, r, rng.uniform(0, 2 * np.pi), (h, w))
            objs.append(_Object(shape, colour, size, str(rng.choice(TEXTURES)), cx, cy, m))
        for o in objs:
            _paint(canvas, o, rng)
        visible = []
        for i, o in enumerate(objs):
            occluders = np.zeros((h, w), bool)
            for later in objs[i + 1 :]:
                occluders |= later.mask
            visible.append(o.mask & ~occluders)
        ok = [i for i, o in enumerate(objs) if visible[i].sum() >= 60 and visible[i].sum() >= 0.6 * o.mask.sum()]
        if not ok:
            continue
        # prefer the object that has a same-colour distractor (object 0 when object 1 copied its colour)
        twin = n > 1 and objs[1].colour == objs[0].colour
        t = 0 if 0 in ok and twin and rng.random() < 0.6 else int(rng.choice(ok))
        canvas += rng.normal(0, rng.uniform(4, 10), canvas.shape)
        image = np.clip(cv2.GaussianBlur(canvas.astype(np.float32), (3, 3), 0.6), 0, 255).astype(np.uint8)
        return image, visible[t].astype(np.int8), _describe(objs, t, rng)
    raise DatasetError("could not generate a scene with a visible target (this is a bug)")


class SyntheticDataset(Dataset):
    """Procedural scenes; ``split`` is ``"train"`` (2000 samples) or ``"val"`` (200), disjoint by seed.

    Args:
        split: "train" or "val".
        seed: base seed; sample ``i`` of a split is generated from ``(seed, split id, i)``.
        size: number of samples (default: the split's size).
        objects: objects per scene, an inclusive ``(low, high)`` range; the standard 3-6 by default. Fewer
            objects make an easier task: with one, the description names the only object (no grounding), a
            curriculum step and a test of clicking alone. Other ranges draw other scenes from the same seeds.
    """

    def __init__(self, split: str = "train", seed: int = 0, size: int | None = None,
                 objects: tuple[int, int] = OBJECTS):
        if split not in SPLITS:
            raise DatasetError(f"synthetic split must be one of {list(SPLITS)}, got {split!r}")
        lo, hi = objects
        if not 1 <= lo <= hi <= 12:
            raise DatasetError(f"synthetic objects must satisfy 1 <= low <= high <= 12, got {lo}-{hi}")
        self.split, self.seed, self.objects = split, seed, (int(lo), int(hi))
        self.split_id, default_size = SPLITS[split]
        self.size = default_size if size is None else int(size)
        spread = f"{lo}-{hi}" if lo != hi else f"{lo}"
        opts = ([f"size={self.size}"] * (self.size != default_size) + [f"seed={seed}"] * (seed != 0)
                + [f"objects={spread}"] * (self.objects != OBJECTS))
        self.name = f"synthetic:{split}" + ("?" + "&".join(opts) if opts else "")

    def __len__(self) -> int:
        return self.size

    def sample_id(self, index: int) -> str:
        """``synthetic-SPLIT-SEED-NNNNN``."""
        return f"synthetic-{self.split}-{self.seed}-{index:05d}"

    def load(self, index: int) -> Sample:
        """Generate scene ``index`` (a pure function of ``(seed, split, index, objects)``)."""
        rng = np.random.default_rng([self.seed, self.split_id, index])
        image, target, caption = make_scene(rng, objects=self.objects)
        sid = self.sample_id(index)
        return Sample(image, target, caption, sid, f"{self.name}#{index}")


def _synthetic(arg: str | None) -> SyntheticDataset:
    """``synthetic[:SPLIT][?size=N&seed=S&objects=K|LO-HI]``: e.g. ``synthetic:train?size=10000`` for more
    training scenes, ``synthetic:val?objects=1`` for one-object scenes."""
    split, _, query = (arg or "train").partition("?")
    opts = query_options(query, "synthetic", {"size": "N", "seed": "S", "objects": "K|LO-HI"})
    try:
        size = int(opts["size"]) if "size" in opts else None
        seed = int(opts.get("seed", 0))
        lo, _, hi = opts.get("objects", f"{OBJECTS[0]}-{OBJECTS[1]}").partition("-")
        objects = (int(lo), int(hi or lo))
    except ValueError as e:
        raise DatasetError(f"synthetic options must be integers (objects: K or LO-HI), got {query!r}") from e
    if size is not None and size < 1:
        raise DatasetError(f"synthetic size must be >= 1, got {size}")
    return SyntheticDataset(split or "train", seed=seed, size=size, objects=objects)


register_dataset("synthetic", _synthetic)
