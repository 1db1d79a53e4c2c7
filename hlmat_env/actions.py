"""Clicks and the env's MultiDiscrete action encoding.

One click type everywhere: :class:`Click` holds pixel coordinates ``x`` (column, along the width) and ``y``
(row, along the height) of the full-resolution image. Conversions to other conventions (SAM's ``(x, y)``
arrays, SegAgent's ``[row, col]``, text codecs) happen only at those boundaries.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from hlmat_env.errors import InvalidAction


class ActionKind(IntEnum):
    """First component of the env action."""

    POSITIVE = 0
    NEGATIVE = 1
    FINISH = 2


@dataclass(frozen=True)
class Click:
    """A click in full-resolution pixel coordinates: ``x`` = column, ``y`` = row."""

    x: int
    y: int
    positive: bool

    def as_row_col(self) -> tuple[int, int]:
        return self.y, self.x


def bin_to_pixel(b: int, size: int, bins: int) -> int:
    """Centre of coordinate bin ``b`` (of ``bins`` over ``size`` pixels) as a pixel index in ``[0, size)``."""
    return min(size - 1, int((b + 0.5) * size / bins))


def pixel_to_bin(p: int, size: int, bins: int) -> int:
    """Bin whose centre falls in pixel ``p``; exact inverse of :func:`bin_to_pixel` when ``size <= bins``."""
    return min(bins - 1, int((p + 0.5) * bins / size))


def encode_click(click: Click | None, width: int, height: int, bins: int) -> np.ndarray:
    """Encode a click (``None`` means finish) as the env action ``[kind, x_bin, y_bin]`` (int64)."""
    if click is None:
        return np.array([ActionKind.FINISH, 0, 0], dtype=np.int64)
    kind = ActionKind.POSITIVE if click.positive else ActionKind.NEGATIVE
    return np.array(
        [kind, pixel_to_bin(click.x, width, bins), pixel_to_bin(click.y, height, bins)], dtype=np.int64
    )


def decode_action(action, width: int, height: int, bins: int) -> Click | None:
    """Decode an env action into a :class:`Click` (``None`` for finish).

    Raises:
        InvalidAction: wrong shape, non-integer dtype or a component out of range, quoting the value.
    """
    a = np.asarray(action)
    if a.shape != (3,):
        raise InvalidAction(f"action must have shape (3,) = [kind, x_bin, y_bin], got shape {a.shape}: {action!r}")
    if not (np.issubdtype(a.dtype, np.integer) or (np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a)))):
        raise InvalidAction(f"action must hold integers, got dtype {a.dtype}: {action!r}")
    kind, bx, by = (int(v) for v in a)
    if kind not in (0, 1, 2):
        raise InvalidAction(f"action kind must be 0 (positive), 1 (negative) or 2 (finish), got {kind}")
    if kind == ActionKind.FINISH:
        return None
    if not (0 <= bx < bins and 0 <= by < bins):
        raise InvalidAction(f"click bins must lie in [0, {bins}), got x={bx}, y={by}")
    return Click(bin_to_pixel(bx, width, bins), bin_to_pixel(by, height, bins), kind == ActionKind.POSITIVE)
