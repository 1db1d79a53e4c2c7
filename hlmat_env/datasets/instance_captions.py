"""Referring captions generated from instance labels: a category name and the layout of same-category instances.

:func:`describe_instances` takes the labelled instances of one image (category name, boolean mask or COCO
``[x, y, w, h]`` box, area) and returns one :class:`GeneratedCaption` per instance:

* the only instance of its category: ``"the dog"``;
* several: a spatial word when one separates the instance from every other instance of its category along
  one axis, by centroid with a margin (:data:`MARGIN`): two -> ``"the dog on the left"`` / ``"the dog at the
  top"`` (the axis that separates the pair best); three or more -> ``"the leftmost of the three cups"``,
  ``"the middle one of the three people"``, ``"the second car from the right"``;
* else, by area with a margin (:data:`SIZE_RATIO`): ``"the larger of the two cups"``, ``"the smallest of the
  four sheep"``;
* else ``"one of the N cats"``, flagged ambiguous (``unambiguous=False``).

A caption flagged unambiguous picks exactly one instance of the group under its reading, and no other
instance comes within the margin of fitting it: a caption never names a different instance equally well.
Everything is deterministic (ties broken by input order); no randomness.

Separation along an axis: instances are sorted by centroid; two neighbours are *separated* when their
centroids differ by at least ``MARGIN`` times the larger of their extents along that axis. The ``k``-th
instance from one end is named by that axis when every gap from that end up to and including the one after
it is separated. ``"the middle one"`` names no axis, so it is used only when the other axis does not single
out a different middle instance.

:func:`caption_stats` counts the share of unambiguous captions of a dataset built with generated captions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

MARGIN = 0.5
"""Centroid gap, as a fraction of the larger extent of two neighbours, that makes a spatial word separate them."""
SIZE_RATIO = 2.0
"""Area ratio that makes "larger"/"largest" (or "smaller"/"smallest") separate an instance from the next one."""

IRREGULAR_PLURALS = {
    "person": "people", "mouse": "mice", "knife": "knives", "sheep": "sheep", "skis": "pairs of skis",
    "scissors": "pairs of scissors", "broccoli": "pieces of broccoli", "tv": "TVs", "hair drier": "hair driers",
}
"""Plurals of COCO category names that the regular rules of :func:`plural` get wrong."""

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
           "twelve")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
            "eleventh", "twelfth")

# axis 0: x (left -> right), axis 1: y (top -> bottom)
_ENDS = {0: ("left", "right"), 1: ("top", "bottom")}
_PAIR = {0: ("on the left", "on the right"), 1: ("at the top", "at the bottom")}
_EXTREME = {0: ("the leftmost", "the rightmost"), 1: ("the top one", "the bottom one")}


@dataclass(frozen=True)
class GeneratedCaption:
    """One generated caption.

    Attributes:
        text: the caption.
        unambiguous: True when the caption picks this instance and no other instance of its category fits it
            within the margins.
        group_size: how many instances of the category the image holds (this one included).
        how: ``"lone"``, ``"spatial"``, ``"size"`` or ``"fallback"`` (``"crowd"`` for a COCO crowd region,
            see :mod:`hlmat_env.datasets.coco`).
    """

    text: str
    unambiguous: bool
    group_size: int
    how: str


@dataclass(frozen=True)
class _Inst:
    centroid: tuple[float, float]
    extent: tuple[float, float]
    area: float


def plural(name: str) -> str:
    """The plural of a category name (COCO's 80 names included; multi-word names pluralise the last word).

    Args:
        name: a singular category name, e.g. ``"person"``, ``"wine glass"``.

    Returns:
        The plural, e.g. ``"people"``, ``"wine glasses"``.
    """
    name = name.strip()
    if name in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[name]
    head, _, last = name.rpartition(" ")
    if last in IRREGULAR_PLURALS:
        out = IRREGULAR_PLURALS[last]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        out = last + "es"
    elif len(last) > 1 and last.endswith("y") and last[-2] not in "aeiou":
        out = last[:-1] + "ies"
    else:
        out = last + "s"
    return f"{head} {out}" if head else out


def number_word(n: int) -> str:
    """``n`` in words up to twelve, digits above.

    Args:
        n: a count.

    Returns:
        e.g. ``"three"``, ``"14"``.
    """
    return NUMBERS[n] if 0 <= n < len(NUMBERS) else str(n)


def _ordinal(k: int) -> str:
    if k < len(ORDINALS):
        return ORDINALS[k]
    n = k + 1
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _geometry(shape: Any, area: float | None) -> _Inst:
    """Centroid, extent and area of a boolean mask or a COCO ``[x, y, w, h]`` box."""
    a = np.asarray(shape)
    if a.ndim == 2:
        ys, xs = np.nonzero(a)
        if len(xs) == 0:
            return _Inst((0.0, 0.0), (0.0, 0.0), float(area or 0.0))
        return _Inst((float(xs.mean()), float(ys.mean())),
                     (float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)),
                     float(area if area is not None else len(xs)))
    if a.shape != (4,):
        raise ValueError(f"an instance needs a boolean HxW mask or an [x, y, w, h] box, got shape {a.shape}")
    x, y, w, h = (float(v) for v in a)
    return _Inst((x + w / 2, y + h / 2), (w, h), float(area if area is not None else w * h))


def _gaps(insts: Sequence[_Inst], axis: int) -> tuple[list[int], list[float]]:
    """Order of ``insts`` along ``axis`` and, per neighbouring pair, centroid gap / (MARGIN * larger extent)."""
    order = sorted(range(len(insts)), key=lambda i: (insts[i].centroid[axis], i))
    scores = []
    for a, b in zip(order, order[1:]):
        gap = insts[b].centroid[axis] - insts[a].centroid[axis]
        ext = max(insts[a].extent[axis], insts[b].extent[axis], 1.0)
        scores.append(gap / (MARGIN * ext))
    return order, scores


def _spatial(insts: Sequence[_Inst], cat: str, plural_name: str) -> dict[int, tuple[float, str]]:
    """Per instance, the best spatial caption that separates it, with its strength (>= 1)."""
    n = len(insts)
    count = number_word(n)
    candidates: dict[int, list[tuple[float, int, int, str]]] = {}  # index -> [(strength, -axis, -k, text)]
    middles: dict[int, int] = {}  # axis -> the separated middle instance
    for axis in (0, 1):
        order, scores = _gaps(insts, axis)
        for rank, i in enumerate(order):
            # k-th from the start: gaps 0..k must separate; k-th from the end: gaps rank-1..n-2
            options = []
            if rank < n - 1:
                options.append((min(scores[: rank + 1]), rank, 0))
            if rank > 0:
                options.append((min(scores[rank - 1:]), n - 1 - rank, 1))
            for strength, k, end in options:
                if strength < 1.0:
                    continue
                if n == 2:
                    text = f"the {cat} {_PAIR[axis][end]}"
                elif n % 2 == 1 and k == n // 2:
                    middles[axis] = i
                    text = f"the middle one of the {count} {plural_name}"
                elif k == 0:
                    text = f"{_EXTREME[axis][end]} of the {count} {plural_name}"
                else:
                    text = f"the {_ordinal(k)} {cat} from the {_ENDS[axis][end]}"
                candidates.setdefault(i, []).append((strength, -axis, -k, text))
    out = {}
    for i, cands in candidates.items():
        # "the middle one" names no axis: not when the other axis singles out a different middle instance
        ok = [c for c in cands if not (c[3].startswith("the middle one") and middles.get(1 + c[1], i) != i)]
        if ok:
            best = max(ok)
            out[i] = (best[0], best[3])
    return out


def _size(insts: Sequence[_Inst], plural_name: str) -> dict[int, str]:
    """Captions by area for the largest / smallest instance when it beats the next one by SIZE_RATIO."""
    n = len(insts)
    order = sorted(range(n), key=lambda i: (insts[i].area, i))
    out: dict[int, str] = {}
    count = number_word(n)
    small, second_small = insts[order[0]].area, insts[order[1]].area
    large, second_large = insts[order[-1]].area, insts[order[-2]].area
    if large > 0 and large >= SIZE_RATIO * second_large:
        out[order[-1]] = f"the {'larger' if n == 2 else 'largest'} of the {count} {plural_name}"
    if second_small > 0 and second_small >= SIZE_RATIO * small:
        out[order[0]] = f"the {'smaller' if n == 2 else 'smallest'} of the {count} {plural_name}"
    return out


def describe_group(category: str, shapes: Sequence[Any], areas: Sequence[float | None] | None = None
                   ) -> list[GeneratedCaption]:
    """Captions for the instances of one category in one image.

    Args:
        category: the category name (singular).
        shapes: per instance, a boolean HxW mask or a COCO ``[x, y, w, h]`` box.
        areas: per instance, its area in pixels (``None``: the mask's pixel count or the box's ``w * h``).

    Returns:
        One :class:`GeneratedCaption` per instance, in input order.
    """
    n = len(shapes)
    if n == 0:
        return []
    areas = list(areas) if areas is not None else [None] * n
    cat = category.strip()
    if n == 1:
        return [GeneratedCaption(f"the {cat}", True, 1, "lone")]
    insts = [_geometry(s, a) for s, a in zip(shapes, areas)]
    plural_name = plural(cat)
    spatial = _spatial(insts, cat, plural_name)
    size = _size(insts, plural_name)
    out = []
    for i in range(n):
        if i in spatial:
            out.append(GeneratedCaption(spatial[i][1], True, n, "spatial"))
        elif i in size:
            out.append(GeneratedCaption(size[i], True, n, "size"))
        else:
            out.append(GeneratedCaption(f"one of the {number_word(n)} {plural_name}", False, n, "fallback"))
    return out


def describe_instances(instances: Sequence[tuple[str, Any, float | None]]) -> list[GeneratedCaption]:
    """Captions for every labelled instance of one image, each relative to the instances of its category.

    Args:
        instances: ``(category name, boolean HxW mask or [x, y, w, h] box, area or None)`` per instance.

    Returns:
        One :class:`GeneratedCaption` per instance, in input order.
    """
    groups: dict[str, list[int]] = {}
    for i, (cat, _, _) in enumerate(instances):
        groups.setdefault(cat, []).append(i)
    out: list[GeneratedCaption | None] = [None] * len(instances)
    for cat, idx in groups.items():
        caps = describe_group(cat, [instances[i][1] for i in idx], [instances[i][2] for i in idx])
        for i, c in zip(idx, caps):
            out[i] = c
    return out  # type: ignore[return-value]


def caption_stats(dataset: Any) -> dict[str, Any]:
    """How many captions of a dataset with generated captions are unambiguous.

    Reads ``dataset.generated_caption(index)`` when the dataset has it (``coco:...?captions=generated``,
    ``folder:...?captions=class``: no pixels are read), else each sample's ``meta["caption_unambiguous"]``.

    Args:
        dataset: a dataset built with generated captions.

    Returns:
        ``{"instances", "unambiguous", "share", "by_how", "share_among_several"}``: counts, the unambiguous
        share, counts per kind of caption (lone, spatial, size, fallback), and the unambiguous share among
        instances that share their image with another instance of their category.
    """
    n = unamb = several = several_unamb = 0
    by_how: dict[str, int] = {}
    for i in range(len(dataset)):
        if hasattr(dataset, "generated_caption"):
            cap = dataset.generated_caption(i)
            flag, how, size = cap.unambiguous, cap.how, cap.group_size
        else:
            meta = dataset[i].meta
            flag, how, size = bool(meta.get("caption_unambiguous")), meta.get("caption_how", "?"), \
                int(meta.get("caption_group_size", 1))
        n += 1
        unamb += bool(flag)
        by_how[how] = by_how.get(how, 0) + 1
        if size > 1:
            several += 1
            several_unamb += bool(flag)
    return {"instances": n, "unambiguous": unamb, "share": unamb / n if n else 0.0, "by_how": by_how,
            "share_among_several": several_unamb / several if several else 0.0}
