"""One person's annotation session on the server: the env, the episode in progress and its recording.

The page only sends pixel clicks; :class:`PlaySession` steps the env (``HLMATEnv.click``) and answers with the
env's render (image, mask overlay, click markers) as a PNG. The target never leaves the server: the IoU is
part of an answer only once the episode has ended, or after every click when ``show_iou`` is set (practice).
"""
from __future__ import annotations

import base64
import difflib
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agents.play.recording import EpisodeWriter, annotated_sample_ids, repair_torn_tails
from hlmat_env.actions import Click
from hlmat_env.errors import HLMATError, InvalidAction, UnknownName
from hlmat_env.masks import encode_rle
from hlmat_env.segmenters import segmenter_name
from hlmat_env.trajectories import Step, Trajectory


class EpisodeEnded(HLMATError):
    """A click or finish arrived after the episode ended (finish or click budget): ask for the next sample."""


@dataclass(frozen=True)
class PlayConfig:
    """Settings of a ``hlmat play`` server.

    Attributes:
        dataset: dataset spec (``synthetic:val``, ``folder:PATH``...).
        out: folder of the recordings (``human-SESSION.jsonl``).
        segmenter: segmenter name.
        start: the env's start state, ``"empty"`` or ``"box"``.
        max_clicks: click budget of an episode (the env truncates there).
        limit: only the first ``limit`` samples (None: all).
        show_iou: send the IoU after every click (practice), not only after the episode.
    """

    dataset: str = "synthetic:val"
    out: str | Path = "runs/play"
    segmenter: str = "default"
    start: str = "empty"
    max_clicks: int = 20
    limit: int | None = None
    show_iou: bool = False

    def __post_init__(self) -> None:
        if self.start not in ("empty", "box"):
            raise ValueError(f"start must be 'empty' or 'box', got {self.start!r}")
        if int(self.max_clicks) < 1:
            raise ValueError(f"max_clicks must be >= 1, got {self.max_clicks!r}")
        if self.limit is not None and int(self.limit) < 1:
            raise ValueError(f"limit must be >= 1 or None, got {self.limit!r}")


def png_data_url(frame: np.ndarray) -> str:
    """A uint8 HxWx3 RGB frame as a ``data:image/png;base64,...`` URL."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(frame[..., ::-1]))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB array
        raise HLMATError("could not encode the frame as PNG")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def new_session_id() -> str:
    """A fresh session id: the UTC start time and 6 random hex digits, e.g. ``20261203T131500-a1b2c3``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class PlaySession:
    """The server side of one annotation session (thread-safe: one lock around the env).

    Args:
        config: the :class:`PlayConfig`.
        session_id: the session id (default: :func:`new_session_id`).
        env: an ``HLMATEnv`` to use (default: built from ``config``); must have ``render_mode="rgb_array"``.
    """

    def __init__(self, config: PlayConfig, session_id: str | None = None, env: Any = None):
        import gymnasium as gym

        import hlmat_env  # noqa: F401  (registers HLMATEnv-v0)

        self.config = config
        self.session_id = session_id or new_session_id()
        self.env = env if env is not None else gym.make(
            "HLMATEnv-v0", dataset=config.dataset, segmenter=config.segmenter, max_clicks=config.max_clicks,
            start=config.start, render_mode="rgb_array")
        self.u = self.env.unwrapped
        n = len(self.u.dataset)
        self.n = n if config.limit is None else min(n, int(config.limit))
        self.ids = [str(self.u.dataset.sample_id(i)) for i in range(self.n)]
        self._by_id = {sid: i for i, sid in enumerate(self.ids)}
        repair_torn_tails(config.out)
        self.writer = EpisodeWriter(config.out, self.session_id)
        self._lock = threading.Lock()
        self._episode_no = 0
        done = annotated_sample_ids(config.out)
        first = next((i for i, sid in enumerate(self.ids) if sid not in done), 0)
        self._begin(first)

    # ------------------------------------------------------------------ requests
    def state(self) -> dict[str, Any]:
        """What the page shows now (see :meth:`_answer`)."""
        with self._lock:
            return self._answer()

    def start(self, sample_id: str | None = None) -> dict[str, Any]:
        """Drop the episode in progress (unfinished episodes are not recorded) and show ``sample_id``, or
        the next sample in dataset order when None.

        Raises:
            UnknownName: ``sample_id`` is not among the served samples.
        """
        with self._lock:
            if sample_id is None:
                index = (self._index + 1) % self.n
            elif sample_id in self._by_id:
                index = self._by_id[sample_id]
            else:
                hint = difflib.get_close_matches(sample_id, self.ids, n=1)
                raise UnknownName(f"unknown sample id {sample_id!r}: not among the {self.n} samples served "
                                  f"({self.ids[0]} .. {self.ids[-1]})"
                                  + (f"; did you mean {hint[0]!r}?" if hint else ""))
            self._begin(index)
            return self._answer()

    def click(self, x: int, y: int, positive: bool, client_t: float | None = None) -> dict[str, Any]:
        """Place a click at pixel ``(x, y)`` (column, row of the full-resolution image) through the env.

        Raises:
            InvalidAction: the click lies outside the image (the message gives the image size).
            EpisodeEnded: the episode has already ended.
        """
        with self._lock:
            if self._ended:
                raise EpisodeEnded("this episode has ended; ask for the next sample (key N)")
            h, w = self.u.image.shape[:2]
            if not (0 <= x < w and 0 <= y < h):
                raise InvalidAction(f"click ({x}, {y}) lies outside the {w}x{h} image "
                                    f"(x must be in [0, {w}), y in [0, {h}))")
            t = time.time() - self._t0
            _, _, _, truncated, info = self.u.click(Click(int(x), int(y), bool(positive)))
            self._steps.append(Step(int(x), int(y), bool(positive), float(info["iou"]), encode_rle(self.u.mask)))
            self._times.append((round(t, 4), None if client_t is None else round(float(client_t), 4)))
            if truncated:  # the budget ends the episode: recorded as not finished by the person
                self._end(finished=False)
            return self._answer()

    def finish(self) -> dict[str, Any]:
        """End the episode (the person is satisfied) and record it; the answer holds the IoU curve.

        Raises:
            EpisodeEnded: the episode has already ended.
        """
        with self._lock:
            if self._ended:
                raise EpisodeEnded("this episode has already ended; ask for the next sample (key N)")
            self.u.click(None)
            self._end(finished=True)
            return self._answer()

    # ------------------------------------------------------------------ internals
    def _begin(self, index: int) -> None:
        from agents.tools.benchmark import episode_seed

        self._index, self._seed = index, episode_seed(0, index)
        _, info = self.env.reset(seed=self._seed, options={"index": index, "start": self.config.start})
        self._start_iou = float(info["iou"])
        self._start_mask = None if self.config.start == "empty" else encode_rle(self.u.mask)
        self._steps: list[Step] = []
        self._times: list[tuple[float, float | None]] = []
        self._ended, self._finished = False, False
        self._started_at = time.time()
        self._t0 = self._started_at

    def _end(self, finished: bool) -> None:
        self._ended, self._finished = True, finished
        self._episode_no += 1
        self.writer.append(self._record())

    def _record(self) -> dict[str, Any]:
        sample = self.u.dataset[self._index]
        gt = sample.target > 0
        traj = Trajectory(
            sample_id=sample.sample_id, height=gt.shape[0], width=gt.shape[1], target=encode_rle(gt),
            clicks=list(self._steps), caption=sample.caption, image=sample.image_ref, dataset=self.config.dataset,
            index=self._index, segmenter=segmenter_name(self.config.segmenter), start=self.config.start,
            start_iou=self._start_iou, start_mask=self._start_mask, seed=self._seed,
            episode_id=f"{sample.sample_id}#human-{self.session_id}-{self._episode_no}")
        d = traj.to_json()
        for c, (t, client_t) in zip(d["clicks"], self._times):
            c["t"], c["client_t"] = t, client_t
        d.update(annotator="human", session_id=self.session_id, finished=self._finished,
                 started_at=round(self._started_at, 3), finished_at=round(time.time(), 3))
        return d

    def _answer(self) -> dict[str, Any]:
        """The page's view: the env's render as a PNG, the caption, the sample, the click count; the IoU
        (and the IoU after each click) only once the episode ended, or always with ``show_iou``."""
        h, w = self.u.image.shape[:2]
        reveal = self._ended or self.config.show_iou
        ious = [s.iou for s in self._steps]
        return {
            "session_id": self.session_id, "sample_id": self.ids[self._index], "index": self._index,
            "n_samples": self.n, "caption": self.u.caption, "start": self.config.start, "width": w, "height": h,
            "num_clicks": len(self._steps), "max_clicks": self.config.max_clicks,
            "clicks": [{"x": s.x, "y": s.y, "positive": s.positive} for s in self._steps],
            "ended": self._ended, "finished": self._finished, "recorded": self.writer.count,
            "iou": (ious[-1] if ious else self._start_iou) if reveal else None,
            "ious": ious if reveal else None, "show_iou": self.config.show_iou,
            "seconds": round(time.time() - self._t0, 2), "image": png_data_url(self.env.render()),
        }
