"""Behaviour cloning warm start: oracle demonstrations on the wrapped env, then cross-entropy on the policy.

Demonstrations follow the robot user. The label of a state is a *soft* target over the click grid: every cell of
the expert's sign whose centre lies deep inside the error region the expert would click (false negatives for a
positive click, false positives for a negative one), weighted by its distance to the region's border, keeping
cells at least half as deep as the deepest one. The robot user's own click snapped to the grid is one of them;
it is the only one when no cell centre falls inside the region. Soft targets tell the clone that any deep click
on the right object is right, which a 1-of-512 label does not. With probability ``explore`` a random grid click
is taken instead of the expert's, so the clone also sees states off the expert's path. When the action space has
a finish action, a state whose expert click (snapped to the grid) does not raise the IoU is relabelled *finish*
(SegAgent's strict-improvement rule for its demonstrations). Each state also keeps the target mask at the
observation's size, a training label for the policy's auxiliary target map (:meth:`ClickNet.maps`). Values are
regressed on the discounted return-to-go, which gives PPO a critic that already knows the task.
"""
from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from agents.tools.settings_record import check_record, write_record
from hlmat_env.masks import coverage_map
from hlmat_env.robot_user import clicked_map, error_distances
from hlmat_env.captions import mirror_code
from hlmat_env.wrappers import click_to_cell

log = logging.getLogger(__name__)
DEMO_FILE = "demos.npz"
STATE_KEYS = ("dataset", "segmenter", "segmenter_version", "wrapper", "max_clicks")


def generate_demos(env: Any, n_episodes: int, *, clicks_per_episode: int | None = None, explore: float = 0.2,
                   gamma: float = 0.9, seed: int = 0, progress: bool = True) -> dict[str, np.ndarray]:
    """Record oracle demonstrations on an :func:`~hlmat_env.wrappers.sb3_wrap`-ped env.

    Args:
        env: the wrapped env; episodes start on uniformly drawn samples of its dataset.
        n_episodes: episodes to record.
        clicks_per_episode: stop an episode after this many clicks (None: at the env's click budget). Early
            clicks decide most of the IoU, so short episodes over more samples teach more per second.
            ``0`` records only each episode's first state and does not step: the empty-mask state, where the
            policy must find the described object, costs no segmenter call (``ret`` and ``reward`` are NaN).
        explore: probability of taking a random grid click instead of the expert's (labels stay the expert's).

    Returns:
        ``image`` uint8 ``(N, C, S, S)``, ``caption`` float32 ``(N, D)`` (absent when the env has none),
        ``action`` int64 ``(N,)`` (the expert's click snapped to the grid, or finish), ``target`` float32
        ``(N, A)`` (the soft label over the ``A`` grid actions, rows sum to 1), ``ret`` float32 ``(N,)``
        (return-to-go), ``reward`` float32 ``(N,)`` (the IoU change of the step taken), ``target_map`` uint8
        ``(N, S, S)`` (the target's area fraction per observation pixel, 0-255; ignore pixels count as
        background).
    """
    grid, finish = _grid_of(env)
    rng = np.random.default_rng(seed)
    u = env.unwrapped
    n_data, n_actions = len(u.dataset), 2 * grid**2 + int(finish)
    images, captions, actions, targets, returns, maps, step_rewards = [], [], [], [], [], [], []
    for ep in tqdm(range(n_episodes), desc="demos", disable=not progress, unit="episode"):
        index = int(rng.integers(n_data))
        obs, _ = env.reset(seed=seed + ep, options={"index": index})
        truth = np.asarray(u.dataset[index].target)
        t_map = coverage_map(truth, obs["image"].shape[-1])
        rewards = []
        while clicks_per_episode is None or len(rewards) < max(1, clicks_per_episode):
            click = u.expert_click()
            if click is None and not finish:
                break
            h, w = u.mask.shape
            label = click_to_cell(click, grid, w, h, finish)
            images.append(obs["image"])
            if "caption" in obs:
                captions.append(obs["caption"])
            actions.append(label)
            targets.append(soft_target(truth, u.mask, u.clicks, click, grid, n_actions, label))
            maps.append(t_map)
            if clicks_per_episode == 0:
                rewards.append(float("nan"))
                break
            take = int(rng.integers(2 * grid**2)) if rng.random() < explore else label
            obs, r, term, trunc, _ = env.step(take)
            rewards.append(r)
            if finish and take == label and click is not None and r <= 0.0:
                actions[-1] = n_actions - 1  # the expert's click would not help: finishing is right here
                targets[-1] = np.zeros(n_actions, np.float32)
                targets[-1][-1] = 1.0
            if term or trunc:
                break
        returns.extend(returns_to_go(rewards, gamma))
        step_rewards.extend(rewards)
    out = {"image": np.stack(images), "action": np.array(actions, np.int64), "target": np.stack(targets),
           "ret": np.array(returns, np.float32), "reward": np.array(step_rewards, np.float32),
           "target_map": np.stack(maps)}
    if captions:
        out["caption"] = np.stack(captions).astype(np.float32)
    return out


def returns_to_go(rewards: list[float], gamma: float) -> list[float]:
    """Discounted return-to-go of each step of one episode's ``rewards``."""
    g, rtg = 0.0, []
    for r in reversed(rewards):
        g = r + gamma * g
        rtg.append(g)
    return rtg[::-1]


def soft_target(truth: np.ndarray, pred: np.ndarray, clicks: Any, click: Any, grid: int, n_actions: int,
                label: int) -> np.ndarray:
    """The soft label (float32 ``(n_actions,)``, sums to 1) of one state; see the module docstring.

    Args:
        truth: int HxW target (1 object, 0 background, -1 ignore); pred: bool HxW current mask.
        clicks: clicks placed so far; click: the robot user's click (None: finish, label ``label`` only).
        label: the grid action of ``click``.
    """
    out = np.zeros(n_actions, np.float32)
    if click is None:
        out[label] = 1.0
        return out
    h, w = pred.shape
    dt_fn, dt_fp = error_distances(truth, pred, clicked_map(clicks, (h, w)))
    dt = dt_fn if click.positive else dt_fp
    rows = np.minimum(h - 1, ((np.arange(grid) + 0.5) * h / grid).astype(int))
    cols = np.minimum(w - 1, ((np.arange(grid) + 0.5) * w / grid).astype(int))
    depth = dt[np.ix_(rows, cols)].reshape(-1)
    if depth.max() <= 0:
        out[label] = 1.0
        return out
    depth = np.where(depth >= 0.5 * depth.max(), depth, 0.0)
    offset = 0 if click.positive else grid**2
    out[offset:offset + grid**2] = depth / depth.sum()
    return out


def concat_demos(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Row-wise union of demonstration arrays (:func:`generate_demos`' format), keeping the keys all parts have."""
    keys = [k for k in parts[0] if all(k in p for p in parts)]
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def _grid_of(env: Any) -> tuple[int, bool]:
    e = env
    while e is not None:
        if hasattr(e, "grid") and hasattr(e, "finish"):
            return e.grid, e.finish
        e = getattr(e, "env", None)
    raise ValueError("generate_demos needs an env wrapped by hlmat_env.wrappers.CoarseClicks (sb3_wrap)")


def load_or_generate(folder: str | Path, make_env: Callable[[], Any], n_episodes: int, *, workers: int = 1,
                     first_click_episodes: int = 0, seed: int = 0, settings: dict[str, Any] | None = None,
                     **kwargs: Any) -> dict[str, np.ndarray]:
    """Demonstrations from ``folder/demos.npz``; generated there first when the file does not exist.

    An existing file is reused as it is (its episode counts may differ from this call's: a staged recipe
    trains several times on one recording). With ``settings``, they are written beside a new file as
    ``demos.json``, and an existing file is refused when its record differs in :data:`STATE_KEYS` (what the
    states mean: dataset, segmenter and its code version, observation wrapper).

    Args:
        make_env: a picklable factory of the wrapped env (e.g. ``functools.partial`` of
            :func:`agents.ppo.train.make_env`), called once per worker.
        n_episodes: episodes recorded with ``kwargs`` (:func:`generate_demos`).
        workers: processes that record in parallel; worker ``i`` records ``n_episodes / workers`` episodes with
            seed ``seed + 100_000 * i``, so a run is reproducible for a given worker count.
        first_click_episodes: further episodes of which only the first (empty-mask) state is recorded (cheap;
            they teach the policy to find the described object), split the same way, seeds ``+ 50_000``.
    """
    path = Path(folder) / DEMO_FILE
    record = path.with_suffix(".json")
    if path.exists():
        if settings is not None:
            check_record(record, settings, f"the demonstrations {path}", keys=STATE_KEYS)
        with np.load(path) as z:
            return dict(z)

    def split(n: int) -> list[int]:
        return [n // workers + (i < n % workers) for i in range(workers)]

    jobs = [(make_env, c, f, seed + 100_000 * i, i == 0 and kwargs.get("progress", True), kwargs)
            for i, (c, f) in enumerate(zip(split(n_episodes), split(first_click_episodes))) if c + f > 0]
    if len(jobs) == 1:
        parts = [_record(jobs[0])]
    else:
        with multiprocessing.get_context("forkserver").Pool(len(jobs)) as pool:
            parts = pool.map(_record, jobs)
    demos = concat_demos(parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.npz")
    np.savez_compressed(tmp, **demos)
    if settings is not None:
        write_record(record, {**settings, "episodes": n_episodes, "seed": seed, "workers": workers,
                              "first_click_episodes": first_click_episodes})
    tmp.replace(path)  # a killed run never leaves a truncated demos.npz behind
    log.info("wrote %d demonstration steps to %s", len(demos["action"]), path)
    return demos


def _record(job: tuple) -> dict[str, np.ndarray]:
    make_env, n, n_first, seed, progress, kwargs = job
    torch.set_num_threads(1)
    env = make_env()
    try:
        parts = [generate_demos(env, n, **{**kwargs, "seed": seed, "progress": progress})] if n else []
        if n_first:
            parts.append(generate_demos(env, n_first, **{**kwargs, "clicks_per_episode": 0, "seed": seed + 50_000,
                                                         "progress": progress}))
    finally:
        env.close()
    return concat_demos(parts)


def flip_batch(batch: dict[str, torch.Tensor], targets: torch.Tensor, grid: int, axis: str,
               caption_code: str = "multihot") -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Mirror a batch of wrapped observations and their grid labels left-right (``axis="x"``) or up-down
    (``"y"``), swapping the caption's "left of"/"right of" (or "above"/"below") bits
    (:func:`hlmat_env.captions.mirror_code`), which keeps every description true. ``batch["image"]`` is
    ``(N, C, S, S)`` (``batch["target_map"]``, ``(N, S, S)``, when present, flips with it), ``targets``
    ``(N, 2 * grid**2 [+ 1])``; the caption (when present) is a ``caption_code`` vector."""
    dim = -1 if axis == "x" else -2
    out = {k: batch[k].flip(dim) for k in ("image", "target_map", "ground_map") if k in batch}
    out.update({k: batch[k] for k in ("ground_est",) if k in batch})  # flip-invariant
    cells = 2 * grid**2
    maps = targets[:, :cells].reshape(-1, 2, grid, grid).flip(dim).reshape(-1, cells)
    targets = torch.cat([maps, targets[:, cells:]], 1)
    if "caption" in batch:
        out["caption"] = mirror_code(batch["caption"], caption_code, axis)
    return out, targets


def behaviour_clone(policy: Any, demos: dict[str, np.ndarray], *, epochs: int = 10, batch_size: int = 64,
                    lr: float = 3e-3, value_coef: float = 0.5, target_coef: float = 1.0, augment: bool = True,
                    trunk_flips: int | None = None, seed: int = 0, progress: bool = True) -> list[dict]:
    """Fit an SB3 actor-critic ``policy`` to ``demos``: cross-entropy against the soft labels (``target``;
    one-hot ``action`` for demos without them), plus ``value_coef`` times the squared error of the value on the
    return-to-go, plus ``target_coef`` times the binary cross-entropy of the predicted target map against
    ``target_map`` (when the demos have it and the features extractor has ``maps``, as :class:`ClickNet`
    does). The learning rate follows a cosine schedule from ``lr`` to 0. With ``augment`` each batch is
    mirrored left-right and/or up-down at random (:func:`flip_batch`; the grid must be square, as
    :class:`~hlmat_env.wrappers.CoarseClicks` makes it). Returns one log row per epoch: loss, target-map loss,
    and accuracy = how often the arg-max action has a non-zero label (a click the soft label accepts).

    A grounded policy with a frozen trunk gets the trunk's maps computed once (:func:`frozen_grounding`),
    averaged over ``trunk_flips`` flips (None: the extractor's current ``flips``), as the saved policy will act."""
    from stable_baselines3.common.preprocessing import preprocess_obs

    gen = torch.Generator().manual_seed(seed)
    n = len(demos["action"])
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    steps = epochs * ((n + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + np.cos(np.pi * min(t, steps) / steps)))
    fe = policy.features_extractor
    code = getattr(fe, "caption_code", "multihot")
    cached = hasattr(fe, "ground") and not fe.train_trunk  # a frozen trunk: its maps are computed once
    dense = "target_map" in demos and hasattr(fe, "maps") and target_coef > 0 and not cached
    keys = [k for k in ("image", "caption") + (("target_map",) if dense else ()) if k in demos]
    tensors = {k: torch.as_tensor(demos[k]) for k in keys}
    if cached:
        flips, fe.flips = fe.flips, trunk_flips or fe.flips
        try:
            tensors["ground_map"], tensors["ground_est"] = frozen_grounding(policy, tensors, progress=progress)
        finally:
            fe.flips = flips
        keys += ["ground_map", "ground_est"]
    returns = torch.as_tensor(demos["ret"])
    n_actions = policy.action_space.n
    grid = int(round((n_actions // 2) ** 0.5))
    targets = (torch.as_tensor(demos["target"]) if "target" in demos
               else F.one_hot(torch.as_tensor(demos["action"]), n_actions).float())
    history = []
    policy.set_training_mode(True)
    for epoch in tqdm(range(epochs), desc="behaviour cloning", disable=not progress, unit="epoch"):
        perm = torch.randperm(n, generator=gen)
        tot, tot_map, correct, count = 0.0, 0.0, 0, 0
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            batch, target = {k: tensors[k][idx] for k in keys}, targets[idx]
            for axis in ("x", "y") if augment else ():
                if torch.rand((), generator=gen) < 0.5:
                    batch, target = flip_batch(batch, target, grid, axis, code)
            obs = preprocess_obs({k: batch[k] for k in ("image", "caption") if k in batch},
                                 policy.observation_space, normalize_images=policy.normalize_images)
            if cached:
                features, map_loss = fe.maps(obs, (batch["ground_map"], batch["ground_est"]))[0], torch.zeros(())
            elif dense:
                features, map_logits = fe.maps(obs)
                truth = F.adaptive_avg_pool2d(batch["target_map"][:, None].float() / 255, map_logits.shape[-2:])
                map_loss = F.binary_cross_entropy_with_logits(map_logits, truth)
            else:
                features, map_loss = fe(obs), torch.zeros(())
            latent_pi, latent_vf = policy.mlp_extractor(features)
            logits = policy.action_net(latent_pi)
            values = policy.value_net(latent_vf).flatten()
            ret = returns[idx]
            known = ~torch.isnan(ret)  # first-click-only states have no return
            value_loss = F.mse_loss(values[known], ret[known]) if known.any() else values.sum() * 0
            loss = F.cross_entropy(logits, target) + value_coef * value_loss
            loss = loss + target_coef * map_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            tot += loss.item() * len(idx)
            tot_map += map_loss.item() * len(idx)
            correct += int((target.gather(1, logits.argmax(1, keepdim=True)) > 0).sum())
            count += len(idx)
        row = {"epoch": epoch + 1, "loss": tot / count, "target_map_loss": tot_map / count,
               "accuracy": correct / count}
        history.append(row)
        log.info("bc epoch %d: loss %.4f target-map loss %.4f accuracy %.3f", epoch + 1, row["loss"],
                 row["target_map_loss"], row["accuracy"])
    policy.set_training_mode(False)
    return history


@torch.no_grad()
def frozen_grounding(policy: Any, tensors: dict[str, torch.Tensor], batch_size: int = 256,
                     progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen trunk's grounding of every demonstration state, once: ``(p, est)`` of
    :meth:`agents.ppo.grounded.GroundedClickNet.ground` (target map float16 ``(N, 1, T, T)``, IoU estimate
    ``(N,)``), averaged over the policy's ``flips``, so the head trains on the maps it will act on (the mean
    over all four flips is mirror-equivariant: flipping a state flips its map and keeps its estimate)."""
    from stable_baselines3.common.preprocessing import preprocess_obs

    fe = policy.features_extractor
    was_training = fe.training
    fe.eval()
    maps, ests = [], []
    n = len(tensors["image"])
    for s in tqdm(range(0, n, batch_size), desc="trunk maps", disable=not progress, unit="batch"):
        obs = preprocess_obs({k: tensors[k][s:s + batch_size] for k in ("image", "caption")},
                             policy.observation_space, normalize_images=policy.normalize_images)
        p, est, _ = fe.ground(obs)
        maps.append(p.half())
        ests.append(est)
    fe.train(was_training)
    return torch.cat(maps), torch.cat(ests)
