"""Clicks and the env's MultiDiscrete action encoding.

One click type everywhere: :class:`Click` holds pixel coordinates ``x`` (column, along the width) and ``y``
(row, along the height) of the full-resolution image. Conversions to other conventions (SAM's ``(x, y)``
arrays, SegAgent's ``[row, col]``, text codecs) happen only at those boundaries.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from hlmat_env.errors import InvalidAction


class ActionKind(IntEnum):
    """First component of the env action."""

    POSITIVE = 0
    NEGATIVE = 1
    FINISH = 2


def is_int(value: Any) -> bool:
    """True for a Python or NumPy integer that is not a bool (``True`` is an ``int`` in Python).

    Args:
        value: anything.

    Returns:
        Whether ``value`` is an ``int`` / ``np.integer`` scalar (a 0-d integer array counts too).
    """
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Click:
    """A click in full-resolution pixel coordinates: ``x`` = column, ``y`` = row.

    Attributes:
        x: column, a Python int (NumPy integers are converted; floats, bools and strings are refused).
        y: row, a Python int (same rule).
        positive: True for a positive click, False for a negative one (a Python or NumPy bool; anything
            else, e.g. ``"no"`` or ``1``, is refused).

    Raises:
        InvalidAction: a coordinate that is not an integer or a sign that is not a bool, naming the value.
            Whether the click lies inside an image is checked where the image is known (``HLMATEnv.click``).
    """

    x: int
    y: int
    positive: bool

    def __post_init__(self) -> None:
        for name in ("x", "y"):
            value = getattr(self, name)
            if not is_int(value):
                raise InvalidAction(f"Click.{name} must be an integer pixel index, got {value!r} "
                                    f"({type(value).__name__})")
            object.__setattr__(self, name, int(value))
        if not isinstance(self.positive, (bool, np.bool_)):
            raise InvalidAction(f"Click.positive must be a bool, got {self.positive!r} "
                                f"({type(self.positive).__name__})")
        object.__setattr__(self, "positive", bool(self.positive))

    def as_row_col(self) -> tuple[int, int]:
        """The click as ``(row, col)`` = ``(y, x)`` (SegAgent's order).

        Returns:
            ``(y, x)`` as two ints.
        """
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


def decode_action(action: Any, width: int, height: int, bins: int) -> Click | None:
    """Decode an env action into a :class:`Click` (``None`` for finish).

    Args:
        action: ``[kind, x_bin, y_bin]``, shape ``(3,)``, any integer dtype, read by value (or floats holding
            finite whole numbers); kind 0 positive, 1 negative, 2 finish.
        width, height: image size in pixels.
        bins: coordinate bins per axis (the env's ``coord_bins``).

    Returns:
        The click in pixels, or None for finish.

    Raises:
        InvalidAction: wrong shape, a non-numeric dtype, a non-finite or fractional value, or a component out
            of range, quoting the value. Finish needs in-range bins too (as ``action_space.contains`` does).
    """
    try:
        a = np.asarray(action)
    except (TypeError, ValueError, OverflowError) as e:  # ragged lists and other non-arrays
        raise InvalidAction(f"action must be an array [kind, x_bin, y_bin], got {action!r} ({e})") from None
    if a.shape != (3,):
        raise InvalidAction(f"action must have shape (3,) = [kind, x_bin, y_bin], got shape {a.shape}: {action!r}")
    if a.dtype.kind == "f":
        if not (np.all(np.isfinite(a)) and np.all(a == np.round(a))):
            raise InvalidAction(f"action must hold finite whole numbers, got {action!r}")
    elif a.dtype.kind not in "iu":  # bool, complex, timedelta64, str, object...: not an action
        raise InvalidAction(f"action must hold integers, got dtype {a.dtype}: {action!r}")
    kind, bx, by = (int(v) for v in a.tolist())  # Python ints: no overflow, whatever the dtype
    if kind not in (0, 1, 2):
        raise InvalidAction(f"action kind must be 0 (positive), 1 (negative) or 2 (finish), got {kind}")
    if not (0 <= bx < bins and 0 <= by < bins):
        raise InvalidAction(f"click bins must lie in [0, {bins}), got x={bx}, y={by}"
                            + (" (finish too: its bins are checked like a click's)" if kind == ActionKind.FINISH else ""))
    if kind == ActionKind.FINISH:
        return None
    return Click(bin_to_pixel(bx, width, bins), bin_to_pixel(by, height, bins), kind == ActionKind.POSITIVE)
