"""Fixed-length caption codes for learned policies and value networks (the env's observation keeps the text).

Two codes, both split a description at its first relation phrase into a *head* (the described object) and a
*tail* (the anchor object):

* ``"multihot"`` (:func:`encode_caption`): words of a fixed vocabulary (the synthetic dataset's colours,
  shapes, sizes and textures) in head and tail, plus a one-hot of :data:`RELATIONS`. Short and exact on the
  synthetic descriptions; other words are dropped.
* ``"hashed"`` (:func:`caption_features`): a hashed bag of *every* word of head and tail (each token goes to two
  buckets, ``crc32(token) % dim`` and ``crc32("#" + token) % dim``, so two words are confused only if both
  collide), plus a one-hot of the longer list :data:`PHRASE_RELATIONS` or "none". No vocabulary file, stable
  across processes, and any free-form caption (RefCOCO, COCO class names) works. The PRM's trunk reads it, and
  so does a PPO policy grounded on that trunk.

:func:`mirror_code` swaps "left of"/"right of" (or "above"/"below") in either code: mirroring an image and its
code together keeps every synthetic description true (data augmentation).
"""
from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np

from hlmat_env.datasets.synthetic import COLOURS, SHAPES, SIZES, TEXTURES

RELATIONS = ("left of", "right of", "above", "below")
VOCABULARY = tuple(COLOURS) + SHAPES + tuple(SIZES) + TEXTURES
PHRASE_RELATIONS = ("left of", "right of", "above", "below", "next to", "beside", "behind", "in front of",
                    "on top of", "under", "near")
CODES = ("multihot", "hashed")
HASHED_DIM = 96


def encode_caption(text: str, vocabulary: Sequence[str] = VOCABULARY,
                   relations: Sequence[str] = RELATIONS) -> np.ndarray:
    """The multi-hot code, float32 ``(2 * len(vocabulary) + len(relations),)``.

    >>> encode_caption("the red disc left of the blue bar", ("red", "blue", "disc", "bar"), ("left of",))
    array([1., 0., 1., 0., 0., 1., 0., 1., 1.], dtype=float32)
    """
    v = len(vocabulary)
    out = np.zeros(2 * v + len(relations), np.float32)
    text = " " + " ".join(text.lower().split()) + " "
    head, tail = text, ""
    found = [(text.find(f" {r} "), i, r) for i, r in enumerate(relations) if f" {r} " in text]
    if found:
        pos, i, r = min(found)
        head, tail = text[:pos], text[pos + len(r) + 1:]
        out[2 * v + i] = 1.0
    index = {w: i for i, w in enumerate(vocabulary)}
    for offset, part in ((0, head), (v, tail)):
        for word in part.split():
            if word in index:
                out[offset + index[word]] = 1.0
    return out


def _tokens(text: str) -> list[str]:
    return "".join(ch if ch.isalnum() else " " for ch in str(text).lower()).split()


def _bag(tokens: list[str], dim: int) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    for t in tokens:
        v[zlib.crc32(t.encode("utf-8")) % dim] += 1.0
        v[zlib.crc32(("#" + t).encode("utf-8")) % dim] += 1.0
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def caption_features(caption: str, dim: int = HASHED_DIM) -> np.ndarray:
    """The hashed code: head bag, tail bag and relation one-hot of ``caption``.

    Returns:
        float32 ``(2 * dim + len(PHRASE_RELATIONS) + 1,)``: head bag (L2-normalised), tail bag (L2-normalised,
        zeros without a relation), one-hot relation (last entry: none). An empty caption gives the "none"
        one-hot only.
    """
    tokens = _tokens(caption)
    text = " " + " ".join(tokens) + " "
    found = [(text.find(f" {r} "), i, r) for i, r in enumerate(PHRASE_RELATIONS) if f" {r} " in text]
    rel = np.zeros(len(PHRASE_RELATIONS) + 1, np.float32)
    if found:
        pos, i, r = min(found)
        head, tail = text[:pos].split(), text[pos + len(r) + 2:].split()
        rel[i] = 1.0
    else:
        head, tail = tokens, []
        rel[-1] = 1.0
    return np.concatenate([_bag(head, dim), _bag(tail, dim), rel])


def code_length(code: str) -> int:
    """Length of the ``code`` vectors (``"multihot"`` or ``"hashed"``)."""
    _check(code)
    return 2 * len(VOCABULARY) + len(RELATIONS) if code == "multihot" else 2 * HASHED_DIM + len(PHRASE_RELATIONS) + 1


def caption_code(text: str, code: str = "multihot") -> np.ndarray:
    """``text`` as the ``code`` vector (float32, :func:`code_length`)."""
    _check(code)
    return encode_caption(text) if code == "multihot" else caption_features(text)


def mirror_code(codes, code: str, axis: str):
    """A copy of ``codes`` (array or tensor ``(N, code_length)``) for images mirrored left-right (``axis="x"``)
    or up-down (``"y"``): the two relations of that axis swapped."""
    _check(code)
    relations, start = (RELATIONS, 2 * len(VOCABULARY)) if code == "multihot" else (PHRASE_RELATIONS, 2 * HASHED_DIM)
    pair = ("left of", "right of") if axis == "x" else ("above", "below")
    i, j = start + relations.index(pair[0]), start + relations.index(pair[1])
    out = codes.clone() if hasattr(codes, "clone") else np.array(codes, copy=True)
    out[:, [i, j]] = out[:, [j, i]]
    return out


def _check(code: str) -> None:
    if code not in CODES:
        raise ValueError(f"caption code must be one of {CODES}, got {code!r}")
