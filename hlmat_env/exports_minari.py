"""Demonstrations as a Farama `Minari <https://minari.farama.org>`_ dataset (``hlmat export --format minari``).

Each recorded trajectory (:mod:`hlmat_env.trajectories`) is *replayed in the env*, so the dataset holds what a
Gymnasium user of ``HLMATEnv-v0`` gets: the observations as the env returns them (the ``Dict`` of ``image``,
``mask`` and ``caption``), the actions in the env's ``MultiDiscrete([3, B, B])`` encoding, the rewards (IoU
deltas) and the end flags. An episode is ``reset`` (start state from the record) then one step per kept click;
it ends with the *finish* action (terminated) unless the click budget truncated it first.

Masks and images are stored losslessly: the storage is written with ``jpeg_encoding=False`` (Minari otherwise
JPEG-encodes uint8 image spaces, in HDF5 and Arrow alike). The dataset lives under ``OUT/<dataset_id>/data``:
``OUT`` is a Minari datasets root, so ``MINARI_DATASETS_PATH=OUT`` makes ``minari.load_dataset(dataset_id)``
find it (:func:`load_minari` does that for one call), and ``minari.MinariDataset(OUT/<dataset_id>/data)``
opens it by path.

Per episode, Minari's ``seed`` and ``options`` (``index``, ``start``) are the env reset's, and ``infos`` holds
``iou`` and ``num_clicks`` (one entry per observation). Episode metadata (``dataset.storage.get_episode_metadata``)
adds ``episode_id``, ``sample_id`` and ``recorded_start`` (the trajectory's start state; ``degraded`` and
``clicks`` starts are replayed from the recorded start mask: reset option ``start="mask"``, whose mask is the
first observation's).

Needs the ``minari`` extra (``pip install "hlmat[minari]"``: ``minari[hdf5]`` 0.5.x).
"""
from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from hlmat_env.actions import decode_action, encode_click
from hlmat_env.errors import require
from hlmat_env.masks import decode_rle
from hlmat_env.trajectories import Trajectory, TrajectoryError

DEFAULT_DATASET_ID = "hlmat/demonstrations-v0"
"""Minari's ``(namespace/)(env_name/)dataset_name(-vN)`` id used when none is given."""
FINISH = np.array([2, 0, 0], dtype=np.int64)


@contextlib.contextmanager
def minari_root(root: str | Path) -> Iterator[Path]:
    """Point Minari's datasets root (``MINARI_DATASETS_PATH``) at ``root`` for the duration of the block.

    Args:
        root: the folder (created).

    Yields:
        ``root`` as an absolute path.
    """
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield root
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _reset_options(t: Trajectory) -> dict[str, Any]:
    """The env reset options that rebuild the trajectory's start state."""
    if t.start in ("empty", "box"):
        return {"index": t.index, "start": t.start}
    if t.start_mask is None:
        raise TrajectoryError(f"episode {t.episode_id!r}: start {t.start!r} without a recorded start_mask")
    return {"index": t.index, "initial_mask": decode_rle(t.start_mask)}


def replay(env: Any, t: Trajectory) -> tuple[dict[str, Any], int]:
    """Replay trajectory ``t`` in ``env`` and collect the episode as Minari stores it.

    Args:
        env: an ``HLMATEnv-v0`` env (wrapped or not) on the trajectory's dataset, so that ``t.index`` is its
            sample.
        t: the trajectory.

    Returns:
        ``(episode, mismatches)``: the fields of a ``minari.data_collector.EpisodeBuffer`` (``seed``, ``options``,
        ``observations``, ``actions``, ``rewards``, ``terminations``, ``truncations``, ``infos``) and the number
        of clicks after which the replayed mask differs from the recorded one (0 when the replay is exact).

    Raises:
        TrajectoryError: the sample is not the recorded one, or a click cannot be written exactly in the env's
            action encoding (an image side larger than ``coord_bins``).
    """
    u = env.unwrapped
    options = _reset_options(t)
    obs, info = env.reset(seed=t.seed, options=options)
    if (u.sample_id != t.sample_id or u.image.shape[:2] != (t.height, t.width)):
        raise TrajectoryError(f"episode {t.episode_id!r}: sample {t.index} of the env is {u.sample_id!r} "
                              f"({u.image.shape[1]}x{u.image.shape[0]}), the record says {t.sample_id!r} "
                              f"({t.width}x{t.height})")
    observations, infos = [obs], [info]
    actions: list[np.ndarray] = []
    rewards: list[float] = []
    terminations: list[bool] = []
    truncations: list[bool] = []
    mismatches = 0
    truncated = False
    for k, step in enumerate(t.clicks):
        action = np.asarray(encode_click(step.click, t.width, t.height, u.coord_bins), dtype=np.int64)
        if decode_action(action, t.width, t.height, u.coord_bins) != step.click:
            raise TrajectoryError(f"episode {t.episode_id!r}: click {k} {step.click} has no exact action with "
                                  f"coord_bins={u.coord_bins} on a {t.width}x{t.height} image; use coord_bins >= "
                                  f"{max(t.width, t.height)}")
        obs, reward, terminated, truncated, info = env.step(action)
        mismatches += int(not np.array_equal(u.mask, decode_rle(step.mask)))
        observations.append(obs), infos.append(info), actions.append(action)
        rewards.append(float(reward)), terminations.append(bool(terminated)), truncations.append(bool(truncated))
        if truncated and k + 1 < len(t.clicks):
            raise TrajectoryError(f"episode {t.episode_id!r} has {len(t.clicks)} clicks, more than the env's "
                                  f"budget max_clicks={u.max_clicks}")
    if not truncated:  # the demonstrator stopped: its last action is finish
        obs, reward, terminated, truncated, info = env.step(FINISH)
        observations.append(obs), infos.append(info), actions.append(FINISH.copy())
        rewards.append(float(reward)), terminations.append(bool(terminated)), truncations.append(bool(truncated))
    episode = {
        "seed": t.seed,
        "options": {"index": int(t.index), "start": options.get("start", "mask")},
        "observations": {"image": np.stack([o["image"] for o in observations]),
                         "mask": np.stack([o["mask"] for o in observations]),
                         "caption": [str(o["caption"]) for o in observations]},
        "actions": np.stack(actions),
        "rewards": rewards,
        "terminations": terminations,
        "truncations": truncations,
        # plain lists: Minari's Arrow storage cannot read back 1-D NumPy info arrays (0.5.4)
        "infos": {"iou": [float(i["iou"]) for i in infos], "num_clicks": [int(i["num_clicks"]) for i in infos]},
    }
    return episode, mismatches


def export_minari(
    trajs: Iterable[Trajectory],
    out_dir: str | Path,
    *,
    dataset_id: str = DEFAULT_DATASET_ID,
    segmenter: Any = None,
    max_clicks: int = 20,
    obs_size: int = 128,
    coord_bins: int = 1000,
    data_format: str = "hdf5",
    chunk: int = 32,
    description: str | None = None,
    author: str | None = None,
    code_permalink: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> int:
    """Write trajectories as the Minari dataset ``out_dir/<dataset_id>`` by replaying each one in the env.

    Every trajectory needs its ``dataset`` spec and ``index`` (as ``hlmat generate`` records them): the env is
    ``gym.make("HLMATEnv-v0", dataset=t.dataset, segmenter=..., max_clicks=..., obs_size=..., coord_bins=...)``.
    When all trajectories share one dataset spec and segmenter name, the dataset records that env's spec, so
    ``dataset.recover_environment()`` rebuilds it.

    Args:
        trajs: the trajectories (e.g. :func:`hlmat_env.trajectories.iter_trajectories`).
        out_dir: the Minari datasets root to write under (never the user's ``~/.minari`` unless given).
        dataset_id: Minari id, ``(namespace/)(env_name/)name(-vN)``; the dataset must not exist yet.
        segmenter: the segmenter name or object to replay with; None: each trajectory's recorded name
            (``"default"`` when none was recorded).
        max_clicks: the env's click budget (a trajectory that reaches it ends truncated).
        obs_size: the env's observation size.
        coord_bins: the env's action bins; must be at least the largest image side for exact actions.
        data_format: Minari storage, ``"hdf5"`` (default) or ``"arrow"`` (needs ``pyarrow``); both lossless here.
        chunk: episodes held in memory before they are appended to the storage.
        description: the dataset's description (a default names hlmat).
        author: the dataset's author, recorded as given.
        code_permalink: a link to the code that made the data, recorded as given.
        env_kwargs: further ``gym.make`` keyword arguments of the replay env (e.g. ``segmenter_kwargs``, as
            ``hlmat generate`` recorded with); they override ``max_clicks``, ``obs_size`` and ``coord_bins``.

    Returns:
        The number of episodes written.

    Raises:
        TrajectoryError: no trajectories, one without a dataset spec or index, or one that the env cannot
            replay (see :func:`replay`).
        ValueError: ``dataset_id`` exists under ``out_dir`` already (Minari's error), or ``chunk < 1``.
        DependencyNotInstalled: ``minari`` (the ``minari`` extra) is missing.
    """
    minari = require("minari", "minari")
    from minari.data_collector import EpisodeBuffer

    import gymnasium as gym

    import hlmat_env  # noqa: F401  (registers HLMATEnv-v0)

    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    trajs = list(trajs)
    if not trajs:
        raise TrajectoryError("no trajectories to export")
    for t in trajs:
        if not t.dataset or t.index < 0:
            raise TrajectoryError(f"episode {t.episode_id!r} has no dataset spec and index to replay it on "
                                  "(record it with hlmat generate, or set Trajectory.dataset and .index)")
    envs: dict[tuple[str, str], Any] = {}

    def env_for(t: Trajectory) -> Any:
        seg = segmenter if segmenter is not None else (t.segmenter or "default")
        key = (t.dataset, seg if isinstance(seg, str) else f"<{id(seg)}>")
        if key not in envs:
            kwargs = {"max_clicks": max_clicks, "obs_size": obs_size, "coord_bins": coord_bins,
                      **(env_kwargs or {})}
            envs[key] = gym.make("HLMATEnv-v0", dataset=t.dataset, segmenter=seg, **kwargs)
        return envs[key]

    first = env_for(trajs[0])
    spec_env = None
    if len({(t.dataset, t.segmenter) for t in trajs}) == 1 and (segmenter is None or isinstance(segmenter, str)):
        try:
            first.spec.to_json()
            spec_env = first
        except (TypeError, ValueError):
            spec_env = None
    meta: list[dict[str, Any]] = []
    diverged: list[str] = []
    dataset = None
    try:
        with minari_root(out_dir), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`(code_permalink|author|author_email|eval_env)` is set to None")
            for start in range(0, len(trajs), chunk):
                buffers = []
                for t in trajs[start:start + chunk]:
                    episode, mismatches = replay(env_for(t), t)
                    if mismatches:
                        diverged.append(f"{t.episode_id} ({mismatches}/{len(t.clicks)} clicks)")
                    buffers.append(EpisodeBuffer(**episode))
                    meta.append({"episode_id": t.episode_id, "sample_id": t.sample_id, "recorded_start": t.start,
                                 "dataset": t.dataset})
                if dataset is None:
                    dataset = minari.create_dataset_from_buffers(
                        dataset_id, buffers, env=spec_env, observation_space=first.observation_space,
                        action_space=first.action_space, algorithm_name="hlmat robot user (record_trajectory)",
                        author=author, code_permalink=code_permalink, data_format=data_format,
                        description=description or "HLMAT expert demonstrations replayed in HLMATEnv-v0 "
                                                   "(hlmat export --format minari)",
                        jpeg_encoding=False)
                else:
                    dataset.update_dataset_from_buffer(buffers)
            dataset.storage.update_episode_metadata(meta, range(len(meta)))
    finally:
        for env in envs.values():
            env.close()
    if diverged:
        warnings.warn(f"{len(diverged)} episode(s) replay differently from their records (another segmenter or "
                      f"settings?); the dataset holds the env's replay: {', '.join(diverged[:5])}"
                      + (" ..." if len(diverged) > 5 else ""), stacklevel=2)
    return len(meta)


def load_minari(out_dir: str | Path, dataset_id: str = DEFAULT_DATASET_ID) -> Any:
    """Open a dataset written by :func:`export_minari` with ``minari.load_dataset``.

    Args:
        out_dir: the datasets root given to :func:`export_minari`.
        dataset_id: the dataset's id.

    Returns:
        The ``minari.MinariDataset``.

    Raises:
        FileNotFoundError: no such dataset under ``out_dir``.
        DependencyNotInstalled: ``minari`` is missing.
    """
    minari = require("minari", "minari")
    with minari_root(out_dir):
        return minari.load_dataset(dataset_id)


__all__ = ["DEFAULT_DATASET_ID", "export_minari", "load_minari", "minari_root", "replay"]
