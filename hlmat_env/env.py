"""``HLMATEnv``: SegAgent's Human-Like Mask Annotation Task as a Gymnasium environment."""
from __future__ import annotations

import math
import string
from collections.abc import Mapping
from collections.abc import Sequence as SequenceABC
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import read_from_shared_memory

from hlmat_env.actions import Click, decode_action, encode_click, is_int
from hlmat_env.datasets import Dataset, Sample, make_dataset
from hlmat_env.errors import HLMATError, InvalidAction, InvalidOption
from hlmat_env.masks import bbox_xywh, box_mask, degrade
from hlmat_env.metrics import intersection_union
from hlmat_env.render import render_state
from hlmat_env.robot_user import clicked_map, next_click
from hlmat_env.segmenters import Prediction, Segmenter, make_segmenter

# Printable ASCII plus Latin-1 letters: real English captions ("the man's pants, left") fit; any other
# character is replaced by "?" in the observation (the raw caption stays in ``info["caption"]``).
CAPTION_CHARSET = "".join(sorted(set(string.printable) - set("\x0b\x0c\r") | set(map(chr, range(0xC0, 0x100)))))
START_STATES = ("empty", "box", "degraded", "mask")

ObsType = dict[str, Any]
"""An observation: ``{"image": uint8 (S, S, 3), "mask": uint8 (S, S, 1) with 0/255, "caption": str}``."""
StepReturn = tuple[ObsType, float, bool, bool, dict[str, Any]]
"""``(observation, reward, terminated, truncated, info)``."""


class CaptionText(spaces.Text):
    """The caption's ``Text`` space: a :class:`gymnasium.spaces.Text` that ``AsyncVectorEnv``'s shared memory
    reads at every step.

    Gymnasium decodes a ``Text`` slot of the shared memory once, when the vector env is built (it then
    returns ``'\\t' * max_length`` forever). For this subclass the read is a :class:`SharedCaptions` view
    that decodes the slot whenever it is accessed, so ``gym.make_vec(..., vectorization_mode="async")`` returns
    the same captions as ``"sync"`` with its default settings. Everything else (sampling, ``contains``,
    flattening, equality) is ``Text``'s.
    """


class SharedCaptions(SequenceABC):
    """A live, read-only view of the ``n`` captions in an ``AsyncVectorEnv``'s shared memory.

    Indexing and iteration decode the current contents; ``copy.deepcopy`` (what ``AsyncVectorEnv`` does with
    its default ``copy=True``) returns a plain ``tuple`` of ``str``, so users see what a sync vector env gives.

    Args:
        space: the caption space.
        shared_memory: the slot made by gymnasium's ``create_shared_memory`` for a ``Text`` space.
        n: number of sub-envs.
    """

    def __init__(self, space: spaces.Text, shared_memory: Any, n: int = 1):
        self.space, self.shared_memory, self.n = space, shared_memory, n

    def snapshot(self) -> tuple[str, ...]:
        """The current captions.

        Returns:
            A tuple of ``n`` strings.
        """
        return read_from_shared_memory.dispatch(spaces.Text)(self.space, self.shared_memory, self.n)

    def __getitem__(self, index: Any) -> Any:
        return self.snapshot()[index]

    def __len__(self) -> int:
        return self.n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SequenceABC) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]  # mutable contents

    def __deepcopy__(self, memo: dict) -> tuple[str, ...]:
        return self.snapshot()

    def __reduce__(self) -> tuple:
        return tuple, (self.snapshot(),)  # pickle / copy.copy: the plain tuple (shared memory stays here)

    def __repr__(self) -> str:
        return repr(self.snapshot())


@read_from_shared_memory.register(CaptionText)
def _read_captions(space: CaptionText, shared_memory: Any, n: int = 1) -> SharedCaptions:
    """Gymnasium's shared-memory reader for :class:`CaptionText`: a live :class:`SharedCaptions` view."""
    return SharedCaptions(space, shared_memory, n)


class HLMATEnv(gym.Env):
    """Interactive segmentation by clicks, as a human annotator does it.

    ## Description
    Each episode is one annotation task drawn from a dataset: an image, a hidden target mask and an optional
    referring description. The agent places positive and negative clicks; a segmenter (the weight-free default,
    SAM, or any object with ``set_image``/``predict``) turns *all clicks so far* plus the previous prediction
    into the current mask. The target is used only for the reward, ``info["iou"]`` and :meth:`expert_action`.

    ## Action Space
    ``MultiDiscrete([3, B, B])`` with ``B = coord_bins`` (default 1000): ``[kind, x, y]``, kind 0 = positive
    click, 1 = negative click, 2 = finish; ``x`` along the width and ``y`` along the height, in bins over the
    full-resolution image (bin ``b`` is pixel ``floor((b + 0.5) * W / B)``). When ``W, H <= B`` every pixel is
    reachable and :meth:`expert_action` decodes back to the robot user's exact pixel. :meth:`click` takes a
    pixel-exact :class:`~hlmat_env.actions.Click` instead.

    ## Observation Space
    ``Dict``: ``"image"`` uint8 ``(S, S, 3)`` RGB, the image resized to ``S = obs_size`` (aspect not kept);
    ``"mask"`` uint8 ``(S, S, 1)``, the current mask resized (nearest) with values **0 and 255**;
    ``"caption"`` the referring description as a ``Text`` space (``""`` when the dataset has none; characters
    outside :data:`CAPTION_CHARSET` become ``"?"``, truncated to ``max_caption_length``). Full-resolution views:
    ``env.unwrapped.image`` and ``env.unwrapped.mask``.

    ## Rewards
    ``IoU_t - IoU_{t-1}`` as a float (IoU with the target, ignore pixels excluded), so an episode's rewards sum
    to final minus initial IoU. Clicks can lower the IoU: rewards can be negative. Finish gives 0.

    ## Episode End
    Terminated by the finish action; truncated once ``max_clicks`` clicks have been placed.

    ## Starting State
    ``start`` (kwarg, or ``reset(options={"start": ...})``): ``"empty"`` (default), ``"box"`` (the target's
    bounding box filled; the box is also given to the segmenter as a prompt), ``"degraded"`` (a randomly
    damaged target, for diverse demonstrations) or ``"mask"`` with ``options["initial_mask"]`` (bool HxW, mask
    refinement). The sample is ``options["index"]`` or drawn from ``np_random``.

    ## Info
    ``iou`` (float), ``intersection`` and ``union`` (pixel counts behind the IoU, for cIoU), ``num_clicks``
    (int), ``sample_id`` (str), ``index`` (int), ``caption`` (raw str); reset and step return the same keys.

    ## Arguments
    ``dataset`` spec or object (``"synthetic"``, ``"synthetic:val"``, ``"folder:PATH"``...), ``segmenter`` name
    or object (``"default"``, ``"sam"``, ``"sam2"``, ``"auto"``), ``segmenter_kwargs`` (dict),
    ``sam_checkpoint``, ``sam_model_type``, ``sam2_checkpoint``, ``sam2_config``, ``max_clicks`` (20),
    ``obs_size`` (128), ``coord_bins`` (1000), ``start``, ``undo_radius`` (0: off; SegAgent's option: a new
    click deletes earlier opposite-sign clicks within this many pixels), ``max_caption_length`` (256),
    ``render_mode`` (``"rgb_array"`` or None).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(
        self,
        dataset: str | Dataset = "synthetic",
        segmenter: str | Segmenter = "default",
        max_clicks: int = 20,
        obs_size: int = 128,
        coord_bins: int = 1000,
        start: str = "empty",
        undo_radius: float = 0.0,
        max_caption_length: int = 256,
        render_mode: str | None = None,
        segmenter_kwargs: dict[str, Any] | None = None,
        sam_checkpoint: str | None = None,
        sam_model_type: str | None = None,
        sam2_checkpoint: str | None = None,
        sam2_config: str | None = None,
    ):
        for name, value, low in (("max_clicks", max_clicks, 1), ("obs_size", obs_size, 8),
                                 ("coord_bins", coord_bins, 2), ("max_caption_length", max_caption_length, 1)):
            if not is_int(value) or value < low:
                raise InvalidOption(f"{name} must be an integer >= {low}, got {value!r}")
        if not isinstance(start, str) or start not in START_STATES or start == "mask":
            raise InvalidOption(f"start must be one of {list(START_STATES[:3])} (\"mask\" via reset options), "
                                f"got {start!r}")
        if (not isinstance(undo_radius, (int, float, np.integer, np.floating)) or isinstance(undo_radius, bool)
                or not math.isfinite(undo_radius) or undo_radius < 0):
            raise InvalidOption(f"undo_radius must be a finite number >= 0, got {undo_radius!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise InvalidOption(f"render_mode must be one of {self.metadata['render_modes']} or None, "
                                f"got {render_mode!r}")
        self.dataset = make_dataset(dataset)
        seg_kwargs = dict(segmenter_kwargs or {})
        if sam_checkpoint is not None:
            seg_kwargs["sam_checkpoint"] = sam_checkpoint
        if sam_model_type is not None:
            seg_kwargs["sam_model_type"] = sam_model_type
        if sam2_checkpoint is not None:
            seg_kwargs["sam2_checkpoint"] = sam2_checkpoint
        if sam2_config is not None:
            seg_kwargs["sam2_config"] = sam2_config
        self.segmenter = make_segmenter(segmenter, **seg_kwargs)
        self.max_clicks, self.obs_size, self.coord_bins = int(max_clicks), int(obs_size), int(coord_bins)
        self.start, self.undo_radius, self.render_mode = start, float(undo_radius), render_mode
        self.max_caption_length = int(max_caption_length)
        s = self.obs_size
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0, 255, (s, s, 3), np.uint8),
            "mask": spaces.Box(0, 255, (s, s, 1), np.uint8),
            "caption": CaptionText(max_length=self.max_caption_length, min_length=0, charset=CAPTION_CHARSET),
        })
        self.action_space = spaces.MultiDiscrete([3, self.coord_bins, self.coord_bins])
        self._sample: Sample | None = None
        self._index: int | None = None
        self._image_obs: np.ndarray | None = None

    # ------------------------------------------------------------------ public views
    @property
    def image(self) -> np.ndarray:
        """Full-resolution image, uint8 HxWx3 RGB (a view: do not modify)."""
        return self._require_sample().image

    @property
    def mask(self) -> np.ndarray:
        """Current full-resolution mask, bool HxW (a copy)."""
        self._require_sample()
        return self._pred.mask.copy()

    @property
    def caption(self) -> str:
        """The current sample's raw referring description (``""`` when the dataset has none)."""
        return self._require_sample().caption

    @property
    def clicks(self) -> list[Click]:
        """Clicks the segmenter currently sees (after undo-radius deletions), oldest first."""
        return list(self._clicks)

    @property
    def sample_id(self) -> str:
        """The current sample's id (unique within its dataset)."""
        return self._require_sample().sample_id

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[ObsType, dict[str, Any]]:
        """Start an episode on a sample (see the class docstring's Starting State).

        Args:
            seed: seeds ``np_random`` (the sample draw and the ``"degraded"`` start), as in Gymnasium.
            options: ``index`` (an int in ``[0, len(dataset))``; drawn from ``np_random`` when absent),
                ``start`` (one of ``"empty"``, ``"box"``, ``"degraded"``, ``"mask"``) and ``initial_mask``
                (HxW, bool or numbers with nonzero = object, for ``start="mask"``, implied when given).

        Returns:
            ``(observation, info)``: the observation dict (``image`` uint8 (S, S, 3), ``mask`` uint8 (S, S, 1)
            0/255, ``caption`` str) and the info dict (see the class docstring).

        Raises:
            InvalidOption: an unknown option or an option of the wrong type or value (a float, bool or string
                index, an index out of range, a mask of the wrong shape or holding NaN), naming it. Options
                are checked before anything changes (only a wrongly shaped ``initial_mask`` is found after the
                sample is loaded; then the env needs another reset).
            DatasetError: the sample cannot be read (the message names the file).
        """
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            raise InvalidOption(f"reset options must be a dict, got {type(options).__name__}: {options!r}")
        options = dict(options)
        unknown = set(options) - {"index", "start", "initial_mask"}
        if unknown:
            raise InvalidOption(f"unknown reset options {sorted(map(str, unknown))}; allowed: index, start, "
                                "initial_mask")
        index = options.get("index")
        if index is not None and not (is_int(index) and 0 <= int(index) < len(self.dataset)):
            raise InvalidOption(f"options['index'] must be an integer in [0, {len(self.dataset)}), got {index!r}"
                                + ("" if is_int(index) else f" ({type(index).__name__})"))
        start = options.get("start", "mask" if "initial_mask" in options else self.start)
        if not isinstance(start, str) or start not in START_STATES:
            raise InvalidOption(f"options['start'] must be one of {list(START_STATES)}, got {start!r}")
        if start == "mask" and "initial_mask" not in options:
            raise InvalidOption("start='mask' needs options['initial_mask'] (bool HxW)")
        if start != "mask" and "initial_mask" in options:
            raise InvalidOption(f"options['initial_mask'] is only used with start='mask', got start={start!r}")
        initial = _as_mask(options["initial_mask"]) if start == "mask" else None
        super().reset(seed=seed)
        self._done = True  # until the new episode is set up: a failed load leaves no half-reset episode to step
        index = int(self.np_random.integers(len(self.dataset))) if index is None else int(index)
        self._load(index)
        self._box = None
        shape = self._sample.target.shape
        if start == "empty":
            start_mask = np.zeros(shape, bool)
        elif start == "box":
            self._box = bbox_xywh(self._sample.target > 0)
            start_mask = box_mask(self._box, shape)
        elif start == "degraded":
            start_mask = degrade(self._sample.target, self.np_random)
        else:
            start_mask = initial
            if start_mask.shape != shape:
                raise InvalidOption(f"options['initial_mask'] must have shape {shape} (the image's HxW), "
                                    f"got {start_mask.shape}")
        self._pred = Prediction(start_mask)
        self._clicks: list[Click] = []
        self._history: list[Click] = []  # every click placed, including undone ones (never re-clicked)
        self._done = False
        self._iou = self._compute_iou()
        self.start_iou = self._iou
        return self._obs(), self._info()

    def step(self, action: Any) -> StepReturn:
        """Apply an action ``[kind, x_bin, y_bin]`` (see the class docstring's Action Space).

        Args:
            action: int array of shape (3,) in the action space (floats holding whole numbers are accepted).

        Returns:
            ``(observation, reward, terminated, truncated, info)``: reward ``IoU_t - IoU_{t-1}`` (float, 0 for
            finish), terminated True after finish, truncated True once ``max_clicks`` clicks were placed.

        Raises:
            InvalidAction: the action is not in the action space (wrong shape or dtype, NaN/inf, out-of-range
                kind or bins, finish included); the episode is unchanged.
            HLMATError: before :meth:`reset`, or after the episode ended.
        """
        self._require_sample()
        try:
            click = decode_action(action, self._w, self._h, self.coord_bins)
        except InvalidAction as e:
            raise InvalidAction(f"{e} (action space {self.action_space})") from None
        return self._apply(click)

    def click(self, click: Click | None) -> StepReturn:
        """Place a pixel-exact click (``None`` = finish).

        Args:
            click: a :class:`Click` with ``0 <= x < W`` and ``0 <= y < H`` (full-resolution pixels), or None.

        Returns:
            The same 5-tuple as :meth:`step`.

        Raises:
            InvalidAction: not a :class:`Click` (or None), or a click outside the image.
            HLMATError: before :meth:`reset`, or after the episode ended.
        """
        self._require_sample()
        if click is not None and not isinstance(click, Click):
            raise InvalidAction(f"click must be a Click or None (finish), got {type(click).__name__}: {click!r}")
        if click is not None and not (0 <= click.x < self._w and 0 <= click.y < self._h):
            raise InvalidAction(f"click {click} lies outside the {self._w}x{self._h} image")
        return self._apply(click)

    def render(self) -> np.ndarray | None:
        """The current state as an RGB frame (uint8 HxWx3: image, mask overlay, clicks) when
        ``render_mode="rgb_array"``, else None."""
        if self.render_mode != "rgb_array":
            return None
        s = self._require_sample()
        return render_state(s.image, self._pred.mask, self._clicks)

    # ------------------------------------------------------------------ expert and snapshots
    def expert_click(self) -> Click | None:
        """The robot user's next click for the current state (None when no error pixel is left)."""
        s = self._require_sample()
        return next_click(s.target, self._pred.mask, clicked_map(self._history, s.target.shape))

    def expert_action(self) -> np.ndarray:
        """:meth:`expert_click` in the action encoding (finish when no error pixel is left)."""
        self._require_sample()
        return encode_click(self.expert_click(), self._w, self._h, self.coord_bins)

    def get_state(self) -> dict[str, Any]:
        """Exact snapshot of the episode (sample, clicks, prediction, IoU, RNG) for :meth:`set_state`."""
        self._require_sample()
        return {
            "index": self._index, "clicks": list(self._clicks), "history": list(self._history),
            "pred": self._pred.copy(), "start_iou": self.start_iou, "done": self._done,
            "box": self._box, "rng": self.np_random.bit_generator.state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a snapshot from :meth:`get_state` (loads the sample's image if another one is current)."""
        if state["index"] != self._index:
            self._load(int(state["index"]))
        self._clicks, self._history = list(state["clicks"]), list(state["history"])
        self._pred, self._done = state["pred"].copy(), state["done"]
        self._iou = self._compute_iou()
        self.start_iou, self._box = state["start_iou"], state["box"]
        self.np_random.bit_generator.state = state["rng"]

    # ------------------------------------------------------------------ internals
    def _apply(self, click: Click | None) -> StepReturn:
        if self._done:
            raise HLMATError("the episode has ended (finish or click budget); call reset()")
        if click is None:
            self._done = True
            return self._obs(), 0.0, True, False, self._info()
        if self.undo_radius > 0:
            r2 = self.undo_radius**2
            self._clicks = [c for c in self._clicks
                            if c.positive == click.positive or (c.x - click.x) ** 2 + (c.y - click.y) ** 2 > r2]
        self._clicks.append(click)
        self._history.append(click)
        self._pred = self.segmenter.predict(list(self._clicks), self._pred, self._box)
        old, self._iou = self._iou, self._compute_iou()
        truncated = len(self._history) >= self.max_clicks
        self._done = truncated
        return self._obs(), float(self._iou - old), False, truncated, self._info()

    def _load(self, index: int) -> None:
        if index == self._index and self._sample is not None:
            return
        self._sample = self.dataset[index]
        self._index = index
        self._h, self._w = self._sample.target.shape
        self.segmenter.set_image(self._sample.image)
        s = self.obs_size
        self._image_obs = cv2.resize(self._sample.image, (s, s), interpolation=cv2.INTER_AREA)
        text = "".join(ch if ch in CAPTION_CHARSET else "?" for ch in self._sample.caption)
        self._caption_obs = text[: self.max_caption_length]

    def _compute_iou(self) -> float:
        self._inter, self._union = intersection_union(self._pred.mask, self._sample.target)
        return 1.0 if self._union == 0 else self._inter / self._union

    def _obs(self) -> dict[str, Any]:
        s = self.obs_size
        m = cv2.resize(self._pred.mask.astype(np.uint8) * 255, (s, s), interpolation=cv2.INTER_NEAREST)
        return {"image": self._image_obs.copy(), "mask": m[..., None], "caption": self._caption_obs}

    def _info(self) -> dict[str, Any]:
        s = self._sample
        return {"iou": float(self._iou), "intersection": self._inter, "union": self._union, "num_clicks": len(self._history), "sample_id": s.sample_id,
                "index": int(self._index), "caption": s.caption}

    def _require_sample(self) -> Sample:
        if self._sample is None:
            raise HLMATError("call reset() before using the environment")
        return self._sample


def _as_mask(value: Any) -> np.ndarray:
    """The ``initial_mask`` reset option as a bool HxW array (nonzero = object).

    Raises:
        InvalidOption: not a 2-D array of bools or finite numbers (NaN, strings, objects, other ranks).
    """
    try:
        a = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise InvalidOption(f"options['initial_mask'] must be a bool HxW array, got {type(value).__name__}") from e
    if a.dtype.kind not in "biuf":
        raise InvalidOption(f"options['initial_mask'] must be a bool HxW array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise InvalidOption(f"options['initial_mask'] must be a bool HxW array, got shape {a.shape}")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise InvalidOption("options['initial_mask'] holds NaN or inf; it must be bool (or 0/1) HxW")
    return a.astype(bool)
