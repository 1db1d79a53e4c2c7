"""Training states for the process reward model: masks of many qualities, each labelled with its true IoU.

For every sample the builder collects (empty masks are skipped: their IoU is trivially 0):

* the masks of the demonstration trajectories of that sample, when a demonstrations folder is given;
* **noisy-policy rollouts** through the env, from each of the chosen start states (:data:`ROLLOUT_STARTS`:
  empty, the robot user's first click, the box): each click is the robot user's with probability ``p`` (two
  rollouts per start, ``p`` = 0.7 and 0.3), otherwise the robot user's click moved by Gaussian noise (sigma
  3-15 px) or a uniformly random pixel, with the sensible sign (positive outside the current mask). These are the states a
  learned policy visits: partial objects, leaks into the background, other objects;
* **degraded targets** (:func:`hlmat_env.masks.degrade`: eroded/dilated, shifted, blobs added/cut), the
  target's **bounding box**, and the target itself;
* optionally **single random clicks**: the mask one positive click at a uniformly random pixel gives (one
  segmenter call each). Mostly other objects and background: the wrong-object masks a PRM must rate low,
  which degraded targets never show.

Labels come from :func:`hlmat_env.metrics.iou` (ignore pixels excluded) at full resolution; images, masks and
targets are stored at the network's input size (:class:`PRMData`). The target is read here only to make
labels (the IoU and the target map the trunk learns to predict) and perturbations: the PRM never sees it.
"""
from __future__ import annotations

import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from agents.prm.model import PRMConfig, resize_image
from hlmat_env.masks import coverage_map
from hlmat_env.actions import Click
from hlmat_env.masks import bbox_xywh, box_mask, degrade
from hlmat_env.metrics import iou


@dataclass
class PRMData:
    """PRM training states: M scenes (image, caption, target map) and N states (a mask of a scene, its IoU).

    Attributes:
        images: uint8 ``(M, 3, S, S)`` (:func:`agents.prm.model.resize_image`); targets: uint8 ``(M, S, S)``
        target coverage 0-255 (:func:`hlmat_env.masks.coverage_map`, a training label only); captions: ``M``
        strings; scene_ids: ``M`` sample ids. state_scene: int64 ``(N,)`` scene of each state; masks: uint8
        ``(N, S, S)`` mask coverage 0-255; labels: float32 ``(N,)`` true IoU (full resolution) in [0, 1];
        sources: ``N`` state kinds.
    """

    images: np.ndarray
    targets: np.ndarray
    captions: list[str]
    scene_ids: list[str]
    state_scene: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def sample_ids(self) -> list[str]:
        """The sample id of every state (``N``)."""
        return [self.scene_ids[i] for i in self.state_scene]

    def save(self, path: str | Path) -> Path:
        """Write the states to ``path`` (compressed ``.npz``), to train again without rebuilding them."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")  # renamed when complete: no half-written cache
        np.savez_compressed(tmp, images=self.images, targets=self.targets, captions=np.asarray(self.captions, str),
                            scene_ids=np.asarray(self.scene_ids, str), state_scene=self.state_scene,
                            masks=self.masks, labels=self.labels, sources=np.asarray(self.sources, str))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "PRMData":
        """Read states written by :meth:`save`."""
        try:
            with np.load(path) as z:
                return cls(z["images"], z["targets"], z["captions"].tolist(), z["scene_ids"].tolist(),
                           z["state_scene"].astype(np.int64), z["masks"], z["labels"], z["sources"].tolist())
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path} is not a PRM state file written by PRMData.save: {e}") from None

    def split(self, keep_scene: Sequence[bool]) -> tuple["PRMData", "PRMData"]:
        """``(the scenes where keep_scene with their states, the other scenes with theirs)``."""
        k = np.asarray(keep_scene, bool)
        if k.shape != (len(self.scene_ids),):
            raise ValueError(f"keep_scene needs one flag per scene ({len(self.scene_ids)}), got {k.shape}")
        parts = []
        for m in (k, ~k):
            sc = np.flatnonzero(m)
            remap = np.full(len(m), -1, np.int64)
            remap[sc] = np.arange(len(sc))
            st = np.flatnonzero(m[self.state_scene])
            parts.append(PRMData(self.images[sc], self.targets[sc], [self.captions[i] for i in sc],
                                 [self.scene_ids[i] for i in sc], remap[self.state_scene[st]], self.masks[st],
                                 self.labels[st], [self.sources[i] for i in st]))
        return parts[0], parts[1]

    @classmethod
    def concat(cls, parts: Sequence["PRMData"]) -> "PRMData":
        """The scenes and states of all ``parts``, in order."""
        offsets = np.cumsum([0] + [len(d.scene_ids) for d in parts[:-1]])
        return cls(np.concatenate([d.images for d in parts]), np.concatenate([d.targets for d in parts]),
                   [x for d in parts for x in d.captions], [x for d in parts for x in d.scene_ids],
                   np.concatenate([d.state_scene + o for d, o in zip(parts, offsets)]),
                   np.concatenate([d.masks for d in parts]), np.concatenate([d.labels for d in parts]),
                   [x for d in parts for x in d.sources])


class _Collector:
    def __init__(self, config: PRMConfig):
        self.config = config
        self.rows: dict[str, list] = defaultdict(list)
        self.scenes: dict[str, int] = {}

    def add(self, image: np.ndarray, mask: np.ndarray, target: np.ndarray, caption: str, sample_id: str,
            source: str) -> None:
        if not mask.any():
            return
        s = self.config.size
        if sample_id not in self.scenes:
            self.scenes[sample_id] = len(self.scenes)
            self.rows["images"].append(resize_image(image, s))
            self.rows["targets"].append(coverage_map(target, s))
            self.rows["captions"].append(str(caption))
            self.rows["scene_ids"].append(sample_id)
        self.rows["state_scene"].append(self.scenes[sample_id])
        self.rows["masks"].append(coverage_map(mask, s))
        self.rows["labels"].append(iou(mask, target))
        self.rows["sources"].append(source)

    def data(self) -> PRMData:
        if not self.rows["labels"]:
            raise ValueError("no PRM training state was produced (empty dataset or empty targets?)")
        r = self.rows
        return PRMData(np.stack(r["images"]), np.stack(r["targets"]), list(r["captions"]), list(r["scene_ids"]),
                       np.asarray(r["state_scene"], np.int64), np.stack(r["masks"]),
                       np.asarray(r["labels"], np.float32), list(r["sources"]))


def noisy_click(env: Any, rng: np.random.Generator, p_expert: float) -> Click | None:
    """The robot user's click with probability ``p_expert``, else a perturbed or random click (sensible sign)."""
    expert = env.expert_click()
    if expert is None or rng.random() < p_expert:
        return expert
    h, w = env.mask.shape
    if rng.random() < 0.7:
        sigma = rng.uniform(3, 15)
        x = int(np.clip(round(expert.x + rng.normal(0, sigma)), 0, w - 1))
        y = int(np.clip(round(expert.y + rng.normal(0, sigma)), 0, h - 1))
    else:
        x, y = int(rng.integers(w)), int(rng.integers(h))
    return Click(x, y, positive=not bool(env.mask[y, x]))


ROLLOUT_STARTS = ("empty", "robot", "box")
"""Start states of the noisy rollouts: ``empty`` (an empty mask; every click noisy), ``robot`` (the benchmark's
first-click protocol: click 1 is the robot user's, then noisy clicks) and ``box`` (the filled bounding box, the
box protocol)."""


def check_starts(starts: Sequence[str] | str) -> tuple[str, ...]:
    """``starts`` (a sequence, or the comma-separated text of the ``--starts`` flag of ``train-prm`` and
    ``eval-prm``) as a tuple, each one of :data:`ROLLOUT_STARTS`.

    Raises:
        InvalidOption: (a ``ValueError``) naming the bad start, or none given.
    """
    from hlmat_env.errors import InvalidOption

    starts = tuple(s for s in starts.split(",") if s) if isinstance(starts, str) else tuple(starts)
    for s in starts:
        if s not in ROLLOUT_STARTS:
            raise InvalidOption(f"rollout start (--starts) must be one of {list(ROLLOUT_STARTS)}, got {s!r}")
    if not starts:
        raise InvalidOption("at least one rollout start (--starts) is needed")
    return starts


def _sample_states(env: Any, index: int, rng: np.random.Generator, col: _Collector, rollout_clicks: int,
                   n_degraded: int, single_clicks: int = 0, starts: Sequence[str] = ("empty",)) -> None:
    u = env.unwrapped
    sample = u.dataset[index]
    target, image, caption, sid = sample.target, sample.image, sample.caption, sample.sample_id
    gt = target > 0
    if not gt.any():
        return
    for start in starts if rollout_clicks > 0 else ():
        for p in (0.7, 0.3):
            env.reset(seed=int(rng.integers(2**31)),
                      options={"index": index, "start": "box" if start == "box" else "empty"})
            tag = f"rollout{p}" if start == "empty" else f"rollout{p}-{start}"
            for k in range(rollout_clicks):
                click = u.expert_click() if start == "robot" and k == 0 else noisy_click(u, rng, p)
                if click is None:
                    break
                _, _, _, truncated, _ = u.click(click)
                col.add(image, u.mask, target, caption, sid, tag)
                if truncated:
                    break
    for _ in range(n_degraded):
        col.add(image, degrade(target, rng), target, caption, sid, "degraded")
    col.add(image, box_mask(bbox_xywh(gt), gt.shape), target, caption, sid, "box")
    col.add(image, gt, target, caption, sid, "target")
    h, w = gt.shape
    for _ in range(single_clicks):
        env.reset(seed=int(rng.integers(2**31)), options={"index": index})
        u.click(Click(int(rng.integers(w)), int(rng.integers(h)), positive=True))
        col.add(image, u.mask, target, caption, sid, "single-click")


def _demo_states(demos: str | Path, col: _Collector, dataset: Any) -> dict[str, set[int]]:
    """Add every mask of the demonstrations; returns the dataset spec -> indices they cover."""
    from hlmat_env.datasets import make_dataset
    from hlmat_env.trajectories import iter_trajectories

    cache: dict[str, Any] = {}
    covered: dict[str, set[int]] = defaultdict(set)
    for traj in iter_trajectories(demos):
        spec = traj.dataset or dataset
        if spec is None:
            raise ValueError(f"trajectory {traj.episode_id!r} in {demos} names no dataset; pass dataset=")
        if traj.index < 0:
            raise ValueError(f"trajectory {traj.episode_id!r} in {demos} has no dataset index")
        if spec not in cache:
            cache[spec] = make_dataset(spec)
        sample = cache[spec][traj.index]
        if sample.sample_id != traj.sample_id:
            raise ValueError(f"trajectory {traj.episode_id!r}: index {traj.index} of {spec} is "
                             f"{sample.sample_id!r}, not {traj.sample_id!r}")
        for k in range(len(traj.clicks) + 1):  # the start mask, then the mask after each click
            col.add(sample.image, traj.mask_before(k), sample.target, sample.caption, sample.sample_id, "demo")
        covered[spec if isinstance(spec, str) else "dataset"].add(int(traj.index))
    return covered


def _generated_states(spec: Any, segmenter: Any, ix: Sequence[int] | None, limit: int | None,
                      config: PRMConfig, rollout_clicks: int, n_degraded: int, seed: int,
                      progress: bool, single_clicks: int = 0,
                      starts: Sequence[str] = ("empty",)) -> PRMData | None:
    """Rollout, degraded, box and target states of samples ``ix`` of ``spec`` (one rng per sample)."""
    import gymnasium as gym
    from tqdm.auto import tqdm

    import hlmat_env  # noqa: F401  (registers HLMATEnv-v0)

    col = _Collector(config)
    env = gym.make("HLMATEnv-v0", dataset=spec, segmenter=segmenter, max_clicks=max(rollout_clicks, 1))
    n = len(env.unwrapped.dataset)
    ix = list(range(n if limit is None else min(n, limit))) if ix is None else ix
    for i in tqdm(ix, desc="PRM states", disable=not progress, unit="sample"):
        rng = np.random.default_rng([seed, int(i)])
        _sample_states(env, int(i), rng, col, rollout_clicks, n_degraded, single_clicks, starts)
    env.close()
    return col.data() if col.rows["labels"] else None


def _generated_states_packed(args: tuple) -> PRMData | None:
    return _generated_states(*args)


def demo_states(demos: str | Path, config: PRMConfig = PRMConfig(), dataset: Any = None) -> PRMData:
    """Only the demonstrations' states (every mask of every trajectory in ``demos``), labelled with true IoU."""
    col = _Collector(config)
    _demo_states(demos, col, dataset)
    return col.data()


def build_prm_dataset(dataset: Any = "synthetic:train", indices: Iterable[int] | None = None, *,
                      segmenter: Any = "default", demos: str | Path | None = None, limit: int | None = None,
                      config: PRMConfig = PRMConfig(), rollout_clicks: int = 10, n_degraded: int = 5,
                      single_clicks: int = 0, starts: Sequence[str] = ("empty",), seed: int = 0, workers: int = 1,
                      progress: bool = False) -> PRMData:
    """Labelled PRM states (see the module docstring).

    Args:
        dataset: dataset spec or object (used for the samples to perturb; with ``demos``, the fallback for
            trajectories that name no dataset).
        indices: samples to use (default: the first ``limit``, or all). With ``demos`` and no ``indices``,
            the samples the demonstrations cover.
        segmenter: segmenter for the noisy-policy rollouts.
        demos: a demonstrations folder / JSONL file (:mod:`hlmat_env.trajectories`), optional.
        config: the PRM input configuration.
        rollout_clicks: clicks per noisy rollout (0: no rollouts, no segmenter calls); n_degraded: degraded targets per sample;
            single_clicks: masks of one random positive click per sample (segmenter calls).
        starts: start states of the rollouts (:data:`ROLLOUT_STARTS`); two rollouts (``p`` = 0.7 and 0.3)
            from each.
        seed: base seed; each sample's states come from ``default_rng([seed, index])``, so the result does
            not depend on ``workers``.
        workers: processes that build the generated states (samples split in contiguous chunks).
    """
    starts = check_starts(starts)
    col = _Collector(config)
    groups: dict[Any, Sequence[int] | None] = {}
    if demos is not None:
        covered = _demo_states(demos, col, dataset)
        if indices is None:
            groups = {spec: sorted(ix)[:limit] if limit else sorted(ix) for spec, ix in covered.items()}
    if not groups:
        groups = {dataset: None if indices is None else list(indices)}
    parts = [col.data()] if col.rows["labels"] else []
    for spec, ix in groups.items():
        spec = dataset if spec == "dataset" else spec
        if workers <= 1:
            parts.append(_generated_states(spec, segmenter, ix, limit, config, rollout_clicks, n_degraded, seed,
                                           progress, single_clicks, starts))
            continue
        if ix is None:
            from hlmat_env.datasets import make_dataset

            n = len(make_dataset(spec) if isinstance(spec, str) else spec)
            ix = list(range(n if limit is None else min(n, limit)))
        chunks = [list(c) for c in np.array_split(np.asarray(ix, int), workers) if len(c)]
        import multiprocessing as mp

        with mp.get_context("fork").Pool(len(chunks)) as pool:
            parts += pool.map(_generated_states_packed, [(spec, segmenter, c, None, config, rollout_clicks,
                                                        n_degraded, seed, False, single_clicks, starts) for c in chunks])
    parts = [p for p in parts if p is not None]
    if not parts:
        raise ValueError("no PRM training state was produced (empty dataset or empty targets?)")
    return PRMData.concat(parts)
