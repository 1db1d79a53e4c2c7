"""Text codecs: exact round trips, axis order per model family, and a total parser (fuzzed with hypothesis)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hlmat_env.actions import Click, decode_action, pixel_to_bin
from hlmat_env.codecs import CODECS, INSTRUCTION, ParsedAction, build_instruction, get_codec, smart_resize
from hlmat_env.errors import UnknownName

NAMES = sorted(CODECS)
FUZZ = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def image_and_click(draw, max_side: int = 1000):
    w, h = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    return w, h, Click(draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1)), draw(st.booleans()))


@pytest.mark.slow
@FUZZ
@given(name=st.sampled_from(NAMES), data=image_and_click(), iou=st.none() | st.integers(0, 100).map(lambda v: v / 100))
def test_round_trip_is_exact_up_to_1000_px(name, data, iou):
    w, h, click = data
    codec = get_codec(name)
    text = codec.format(click, w, h, iou=iou)
    parsed = codec.parse(text, w, h)
    rw, rh = smart_resize(w, h)
    if name == "qwen25" and (rw < w or rh < h):
        # the resized input is smaller than the image: exact up to the resized pixel the click falls in
        assert pixel_to_bin(parsed.click.x, w, rw) == pixel_to_bin(click.x, w, rw)
        assert pixel_to_bin(parsed.click.y, h, rh) == pixel_to_bin(click.y, h, rh)
        parsed = ParsedAction(click=click, iou=parsed.iou)
    assert parsed == ParsedAction(click=click, iou=iou)
    assert codec.parse(codec.format(None, w, h), w, h) == ParsedAction(finish=True)


@pytest.mark.slow
@FUZZ
@given(name=st.sampled_from(NAMES), text=st.text(max_size=300), w=st.integers(1, 5000), h=st.integers(1, 5000))
def test_parse_never_raises_on_any_string(name, text, w, h):
    p = get_codec(name).parse(text, w, h)
    assert isinstance(p, ParsedAction)
    assert p.valid == (p.invalid is None)
    if p.valid and not p.finish:
        assert 0 <= p.click.x < w and 0 <= p.click.y < h
    if p.valid and p.iou is not None:
        assert 0.0 <= p.iou <= 1.0
    if not p.valid:
        assert p.click is None and not p.finish and p.invalid


# Near-miss answers: the grammar's own pieces recombined with junk, huge, negative, NaN and non-ASCII values.
_number = st.one_of(
    st.integers(-10**15, 10**15).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["nan", "inf", "-0", "1e3", "0x10", "١٢", "１２", "", " ", "999999999999999999999", "1.", ".5"]),
)
_answer = st.builds(
    lambda pre, sign, a, b, sep, post: f"{pre}{sign} point: ({a}{sep}{b}){post}",
    st.sampled_from(["", " ", "Current IOU: 50, ", "Current IOU: nan, ", "Current IOU: 101, ", "\n", "x"]),
    st.sampled_from(["Positive", "Negative", "positive", "NEGATIVE", "Neutral", ""]),
    _number, _number, st.sampled_from([", ", ",", " ", ";", ",,"]),
    st.sampled_from(["", ".", " ", "\n", ")", " Finish", "<|im_end|>"]),
)


@pytest.mark.slow
@FUZZ
@given(name=st.sampled_from(NAMES), text=_answer, w=st.integers(1, 3000), h=st.integers(1, 3000))
def test_parse_near_misses_is_total_and_in_range(name, text, w, h):
    p = get_codec(name).parse(text, w, h)
    assert isinstance(p, ParsedAction)
    if p.valid and not p.finish:
        assert 0 <= p.click.x < w and 0 <= p.click.y < h


def test_axis_order_per_family():
    # a click at column 10, row 100 of a 1000x1000 image
    c = Click(10, 100, True)
    assert get_codec("segagent-qwen").format(c, 1000, 1000) == "Positive point: (100, 10)"  # row first
    assert get_codec("qwen2").format(c, 1000, 1000) == "Positive point: (10, 100)"
    assert get_codec("qwen3").format(c, 1000, 1000) == "Positive point: (10, 100)"
    assert get_codec("llava").format(c, 1000, 1000) == "Positive point: (0.010, 0.100)"
    # qwen25: pixels of the resized input (1000x1000 -> 1008x1008 with factor 28)
    assert smart_resize(1000, 1000) == (1008, 1008)
    assert get_codec("qwen25").format(c, 1000, 1000) == "Positive point: (10, 101)"
    p = get_codec("segagent-qwen").parse("Negative point: (200, 534)", 1000, 500)
    assert p.click == Click(534, 100, False)


def test_qwen25_uses_the_given_resize_rule():
    codec = get_codec("qwen25", resize=lambda w, h: (56, 28))
    assert codec.format(Click(99, 49, True), 100, 50) == "Positive point: (55, 27)"
    assert codec.parse("Positive point: (56, 28)", 100, 50).click == Click(99, 49, True)  # closed bound
    assert "outside [0, 56]" in codec.parse("Positive point: (57, 0)", 100, 50).invalid


def test_iou_prefix_and_finish():
    codec = get_codec("qwen2")
    assert codec.format(None, 10, 10, iou=0.745) == "Current IOU: 74, Finish" or \
        codec.format(None, 10, 10, iou=0.745) == "Current IOU: 75, Finish"
    p = codec.parse("current iou: 85.2 , Finish", 10, 10)
    assert p.finish and p.iou == pytest.approx(0.852)
    assert "[0, 100]" in codec.parse("Current IOU: 101, Finish", 10, 10).invalid


@pytest.mark.parametrize("text, reason", [
    ("", "empty"), ("   \n", "empty"), ("x" * 1000, "too long"), ("Positive point: (1.5, 3)", "not an integer"),
    ("Positive point: (1001, 3)", "outside [0, 1000]"), ("Positive point: (-1, 3)", "outside"),
    ("Positive point: (nan, 3)", "no action"), ("Positive point: (3, 4) and more", "no action"),
    ("Positive point: (3)", "no action"), ("Click: (3, 4)", "no action"),
])
def test_invalid_reasons(text, reason):
    p = get_codec("qwen2").parse(text, 100, 100)
    assert not p.valid and reason in p.invalid
    with pytest.raises(ValueError, match="invalid"):
        p.to_action(100, 100, 1000)


def test_tolerated_whitespace_and_period():
    codec = get_codec("llava")
    assert codec.parse(" Positive point: (0.5, 0.25).\n", 100, 100).click == Click(50, 25, True)
    assert codec.parse("Negative point: (1, 0)", 100, 100).click == Click(99, 0, False)
    assert "outside [0, 1]" in codec.parse("Negative point: (1.5, 0)", 100, 100).invalid


def test_non_string_and_bad_size():
    codec = get_codec("qwen2")
    assert "not a string" in codec.parse(None, 10, 10).invalid
    with pytest.raises(ValueError, match="width and height"):
        codec.parse("Finish", 0, 10)
    with pytest.raises(ValueError, match="outside"):
        codec.format(Click(10, 0, True), 10, 10)
    with pytest.raises(ValueError, match="fraction"):
        codec.format(None, 10, 10, iou=74)


def test_registry_and_instruction():
    with pytest.raises(UnknownName, match="qwen2"):
        get_codec("qwen")
    assert build_instruction("  the red  cup ") == INSTRUCTION + " the red cup"
    assert build_instruction("") == INSTRUCTION
    p = get_codec("qwen2").parse("Positive point: (500, 500)", 200, 100)
    action = p.to_action(200, 100, 1000)
    assert decode_action(action, 200, 100, 1000) == Click(100, 50, True)
