"""Text action codecs: how a multimodal LLM writes a click, and the parser that reads it back.

SegAgent's policy answers ``Positive point: (a, b)``, ``Negative point: (a, b)`` or ``Finish``, optionally
preceded by its own estimate of the current mask's quality, ``Current IOU: NN, `` (0-100, the PRM variant).
Models differ in what ``(a, b)`` means, so every codec states its axis order and scale:

============== ===================== =================================================================
name           text order            scale
============== ===================== =================================================================
segagent-qwen  (row, col)            integers 0-1000 of the image (SegAgent-Qwen's released code reads
                                     the *first* number as the row)
qwen2, qwen3   (x, y) = (col, row)   integers 0-1000 of the image (Qwen2-VL / Qwen3-VL grounding)
qwen25         (x, y)                absolute pixels of the model's *resized* input (Qwen2.5-VL); the
                                     codec needs the resize rule, :func:`smart_resize` by default
llava          (x, y)                decimals in [0, 1) of the image (LLaVA)
============== ===================== =================================================================

Writing uses bin centres (``pixel_to_bin`` with 1000 bins), reading maps back to the pixel whose bin it is,
so a click round-trips exactly on images up to 1000 px per side. Reading accepts the closed upper bound
(1000, 1.0, the resized size) as the last pixel.

Parsing is a trust boundary: :meth:`Codec.parse` returns a :class:`ParsedAction` for *any* string (empty,
huge, NaN, out of range, Unicode digits...) and never raises; invalid text gets ``invalid`` = the reason.
"""
from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from hlmat_env.actions import Click, bin_to_pixel, encode_click, pixel_to_bin
from hlmat_env.errors import unknown_name

INSTRUCTION = (
    "Please optimize the semi-transparent green mask in a point-wise manner based on the image and description "
    "content, so that it covers the target object as accurately as possible. The object description is as follows:"
)
"""SegAgent's instruction (its released prompt, without Qwen-VL-Chat's ``<ref>`` tags)."""

MAX_TEXT_LENGTH = 256
"""Longer model outputs are invalid without being scanned (an answer is ~40 characters)."""

_NUM = r"[+-]?[0-9]{1,12}(?:\.[0-9]{1,12})?"
_ACTION_RE = re.compile(
    rf"""(?:current\s*iou\s*:\s*(?P<iou>{_NUM})\s*%?\s*,\s*)?
        (?:(?P<finish>finish)
          |(?P<sign>positive|negative)\s*point\s*:\s*\(\s*(?P<a>{_NUM})\s*,\s*(?P<b>{_NUM})\s*\))
        \s*\.?""",
    re.IGNORECASE | re.ASCII | re.VERBOSE,
)


def build_instruction(caption: str) -> str:
    """The user turn's text: SegAgent's instruction followed by the object description (if any)."""
    caption = " ".join(str(caption).split())
    return f"{INSTRUCTION} {caption}" if caption else INSTRUCTION


@dataclass(frozen=True)
class ParsedAction:
    """The result of parsing one model answer.

    Attributes:
        click: the click in full-resolution pixels (``x`` = column, ``y`` = row), None for finish or invalid.
        finish: True for ``Finish``.
        iou: the model's ``Current IOU`` estimate as a fraction in [0, 1], None when absent.
        invalid: why the text is not an action (None when valid).
    """

    click: Click | None = None
    finish: bool = False
    iou: float | None = None
    invalid: str | None = None

    @property
    def valid(self) -> bool:
        """True when the text was an action (a click or finish), i.e. :attr:`invalid` is None."""
        return self.invalid is None

    def to_action(self, width: int, height: int, bins: int) -> np.ndarray:
        """The env action ``[kind, x_bin, y_bin]`` (int64) of a valid parse.

        Raises:
            ValueError: when the parse is invalid.
        """
        if not self.valid:
            raise ValueError(f"cannot convert an invalid parse to an action: {self.invalid}")
        return encode_click(None if self.finish else self.click, width, height, bins)


class _Reject(Exception):
    """Internal: a coordinate cannot be decoded (caught inside :meth:`Codec.parse`)."""


class Codec(ABC):
    """Formats clicks as text and parses text back; subclasses define the two coordinate numbers."""

    name: str = "codec"

    @abstractmethod
    def encode_coords(self, click: Click, width: int, height: int) -> tuple[str, str]:
        """The two numbers written inside the parentheses, in text order."""

    @abstractmethod
    def decode_coords(self, a: str, b: str, width: int, height: int) -> tuple[int, int]:
        """Pixel ``(x, y)`` from the two numbers as written; raises ``_Reject`` with a reason."""

    def format(self, click: Click | None, width: int, height: int, iou: float | None = None) -> str:
        """The answer text for ``click`` (None = ``Finish``) on a ``width`` x ``height`` image.

        Args:
            click: full-resolution pixel click, or None for finish.
            width, height: full-resolution image size in pixels.
            iou: optional IoU of the current mask as a fraction in [0, 1]; written as ``Current IOU: NN, ``
                with NN = round(100 * iou).
        Raises:
            ValueError: click outside the image, iou outside [0, 1] or not finite, bad sizes.
        """
        _check_size(width, height)
        prefix = ""
        if iou is not None:
            if not (isinstance(iou, (int, float, np.floating, np.integer)) and 0.0 <= float(iou) <= 1.0):
                raise ValueError(f"iou must be a fraction in [0, 1], got {iou!r}")
            prefix = f"Current IOU: {round(100 * float(iou))}, "
        if click is None:
            return prefix + "Finish"
        if not (0 <= click.x < width and 0 <= click.y < height):
            raise ValueError(f"click {click} lies outside the {width}x{height} image")
        a, b = self.encode_coords(click, width, height)
        return f"{prefix}{'Positive' if click.positive else 'Negative'} point: ({a}, {b})"

    def parse(self, text: Any, width: int, height: int) -> ParsedAction:
        """Parse one model answer; never raises for any ``text`` (a bad image size is the caller's bug and
        still raises ``ValueError``).

        Leading/trailing whitespace (LLaVA templates emit a leading space) and one final period are ignored;
        anything else around the action makes it invalid.
        """
        _check_size(width, height)
        try:
            return self._parse(text, width, height)
        except Exception as e:  # noqa: BLE001 - last line of the trust boundary; the fuzz tests never reach it
            return ParsedAction(invalid=f"unparseable output ({type(e).__name__}: {e})")

    def _parse(self, text: Any, width: int, height: int) -> ParsedAction:
        if not isinstance(text, str):
            return ParsedAction(invalid=f"output is not a string but {type(text).__name__}")
        if len(text) > MAX_TEXT_LENGTH:
            return ParsedAction(invalid=f"output too long ({len(text)} characters > {MAX_TEXT_LENGTH})")
        stripped = text.strip()
        if not stripped:
            return ParsedAction(invalid="empty output")
        m = _ACTION_RE.fullmatch(stripped)
        if m is None:
            return ParsedAction(invalid=f"no action in {_short(stripped)}: expected 'Positive point: (a, b)', "
                                        "'Negative point: (a, b)' or 'Finish', optionally after 'Current IOU: NN, '")
        iou = None
        if m["iou"] is not None:
            value = float(m["iou"])
            if not 0.0 <= value <= 100.0:
                return ParsedAction(invalid=f"Current IOU must lie in [0, 100], got {m['iou']}")
            iou = value / 100.0
        if m["finish"] is not None:
            return ParsedAction(finish=True, iou=iou)
        try:
            x, y = self.decode_coords(m["a"], m["b"], width, height)
        except _Reject as e:
            return ParsedAction(iou=iou, invalid=f"{e} in {_short(stripped)}")
        return ParsedAction(click=Click(x, y, m["sign"].lower() == "positive"), iou=iou)


class _Norm1000(Codec):
    """Integers 0-1000 of the image; ``row_first`` selects SegAgent-Qwen's (row, col) order."""

    bins = 1000

    def __init__(self, name: str, row_first: bool):
        self.name, self.row_first = name, row_first

    def encode_coords(self, click: Click, width: int, height: int) -> tuple[str, str]:
        nx, ny = pixel_to_bin(click.x, width, self.bins), pixel_to_bin(click.y, height, self.bins)
        return (str(ny), str(nx)) if self.row_first else (str(nx), str(ny))

    def decode_coords(self, a: str, b: str, width: int, height: int) -> tuple[int, int]:
        na, nb = _integer(a, self.bins, self.name), _integer(b, self.bins, self.name)
        nx, ny = (nb, na) if self.row_first else (na, nb)
        return bin_to_pixel(min(nx, self.bins - 1), width, self.bins), bin_to_pixel(min(ny, self.bins - 1), height, self.bins)


class LlavaCodec(Codec):
    """Decimals in [0, 1) of the image, (x, y), written with ``decimals`` digits (3 keeps 1000 px exact): the
    value is the pixel's bin ``b / 10**decimals``; reading takes the bin the value falls in."""

    name = "llava"

    def __init__(self, decimals: int = 3):
        if not isinstance(decimals, int) or not 1 <= decimals <= 6:
            raise ValueError(f"decimals must be an integer in [1, 6], got {decimals!r}")
        self.decimals = decimals

    def encode_coords(self, click: Click, width: int, height: int) -> tuple[str, str]:
        """``(x, y)`` as fractions of the width and height with ``decimals`` digits (the pixel's bin's left edge).

        Args:
            click: full-resolution pixel click.
            width, height: image size in pixels.

        Returns:
            Two strings such as ``("0.250", "0.500")``.
        """
        bins = 10**self.decimals  # write the left edge of the pixel's bin: exact, and always < 1
        return tuple(f"{pixel_to_bin(p, s, bins) / bins:.{self.decimals}f}" for p, s in ((click.x, width), (click.y, height)))

    def decode_coords(self, a: str, b: str, width: int, height: int) -> tuple[int, int]:
        """Pixel ``(x, y)`` from two fractions in ``[0, 1]`` (``a`` along the width, ``b`` the height).

        Raises:
            _Reject: a value that is not a finite number in ``[0, 1]`` (``parse`` turns it into an invalid parse).
        """
        bins = 10**self.decimals
        out = []
        for text, size in ((a, width), (b, height)):
            v = float(text)
            if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise _Reject(f"coordinate {text} outside [0, 1] for codec {self.name}")
            out.append(bin_to_pixel(min(bins - 1, math.floor(v * bins + 1e-6)), size, bins))
        return out[0], out[1]


def smart_resize(width: int, height: int, factor: int = 28, min_pixels: int = 56 * 56,
                 max_pixels: int = 28 * 28 * 16384) -> tuple[int, int]:
    """Qwen2-VL / Qwen2.5-VL's input resize: sides rounded to multiples of ``factor`` (patch x merge) with the
    area kept within ``[min_pixels, max_pixels]``. Returns ``(resized_width, resized_height)``."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return w_bar, h_bar


class Qwen25Codec(Codec):
    """Absolute pixels (x, y) of the model's resized input (Qwen2.5-VL).

    Args:
        resize: maps the image's ``(width, height)`` to the model input's ``(width, height)``;
            :func:`smart_resize` with Qwen2.5-VL's processor defaults when None. ``MLLMAgent`` passes the
            rule of the loaded processor.
    """

    name = "qwen25"

    def __init__(self, resize: Callable[[int, int], tuple[int, int]] | None = None):
        self.resize = resize or smart_resize

    def encode_coords(self, click: Click, width: int, height: int) -> tuple[str, str]:
        """``(x, y)`` as integers on the image resized by ``resize`` (Qwen2.5-VL's absolute coordinates).

        Args:
            click: full-resolution pixel click.
            width, height: image size in pixels.

        Returns:
            Two integer strings.
        """
        rw, rh = self.resize(width, height)
        return str(pixel_to_bin(click.x, width, rw)), str(pixel_to_bin(click.y, height, rh))

    def decode_coords(self, a: str, b: str, width: int, height: int) -> tuple[int, int]:
        """Pixel ``(x, y)`` from two integers on the resized image (``a`` along the width, ``b`` the height).

        Raises:
            _Reject: a value that is not an integer in range (``parse`` turns it into an invalid parse).
        """
        rw, rh = self.resize(width, height)
        xa, yb = _integer(a, rw, self.name), _integer(b, rh, self.name)
        return bin_to_pixel(min(xa, rw - 1), width, rw), bin_to_pixel(min(yb, rh - 1), height, rh)


def _integer(text: str, top: int, codec: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise _Reject(f"coordinate {text} is not an integer (codec {codec} writes integers)")
    v = int(text)
    if not 0 <= v <= top:
        raise _Reject(f"coordinate {text} outside [0, {top}] for codec {codec}")
    return v


def _check_size(width: int, height: int) -> None:
    if not (isinstance(width, (int, np.integer)) and isinstance(height, (int, np.integer)) and width > 0 and height > 0):
        raise ValueError(f"image width and height must be positive integers, got {width!r} x {height!r}")


def _short(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


CODECS: dict[str, Callable[..., Codec]] = {
    "segagent-qwen": lambda: _Norm1000("segagent-qwen", row_first=True),
    "qwen2": lambda: _Norm1000("qwen2", row_first=False),
    "qwen3": lambda: _Norm1000("qwen3", row_first=False),
    "qwen25": Qwen25Codec,
    "llava": LlavaCodec,
}


def get_codec(name: str | Codec, **kwargs: Any) -> Codec:
    """A codec by name (see the module table); ``kwargs`` go to its constructor (``resize`` for qwen25,
    ``decimals`` for llava). A :class:`Codec` instance is returned as is.

    Raises:
        UnknownName: unknown name, with the choices.
    """
    if isinstance(name, Codec):
        return name
    if name not in CODECS:
        raise unknown_name("coordinate codec", name, CODECS)
    return CODECS[name](**kwargs)


__all__ = ["CODECS", "INSTRUCTION", "Codec", "LlavaCodec", "ParsedAction", "Qwen25Codec", "build_instruction",
           "get_codec", "smart_resize"]
