"""Grounding pretraining of the PRM's trunk on scenes alone: the target-map loss, no states, no segmenter.

Why: the grounded PPO policy (:mod:`agents.ppo.grounded`) needs a trunk that finds the described object, and
a full PRM (``hlmat train-prm``: rollout states, an IoU head) costs over an hour here. Grounding needs only
(image, caption, target) triples, which the synthetic generator makes cheaply (no segmenter), so
this trainer spends its whole budget on the trunk's map loss (BCE plus one minus the map's fuzzy IoU, as
:func:`agents.prm.train.train_prm` uses). The result is a PRM checkpoint (``prm.pt``) whose IoU head is the
untrained fuzzy IoU of map and mask (:meth:`PRMNet.iou` starts there), loadable by ``hlmat train-ppo --trunk``.

Images are stored at the policy's *observation* size and area-resampled to the trunk's size per batch, exactly
as :meth:`GroundedClickNet.ground` does when it acts, so the trunk trains on the pixels it will see.

Small convolutions do not speed up with intra-op threads on this CPU (measured: 1 and 2 threads take the same
time per step), so ``workers > 1`` trains data-parallel (``DistributedDataParallel`` over gloo, one thread per
process): each process takes its slice of every global batch. A checkpoint every ``checkpoint_every`` steps
holds the weights, the optimiser and the schedule; the batch order and the augmentation are functions of
``(seed, step)``, so a killed run resumes (``resume=True``) where the checkpoint left it, with the same batches.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from agents.prm.model import PRMConfig, PRMNet, fuzzy_iou
from agents.prm.train import augment, caption_table, flip_maps, save_prm

log = logging.getLogger(__name__)
CHECKPOINT = "trunk_checkpoint.pt"


@dataclass
class SceneMaps:
    """Grounding data: ``images`` uint8 ``(M, 3, O, O)`` at the observation size ``O`` (area-resampled, as the
    env wrapper makes them), ``targets`` uint8 ``(M, T, T)`` target coverage 0-255 at the trunk's size ``T``
    (:func:`hlmat_env.masks.coverage_map`; a training label), ``captions`` ``M`` strings."""

    images: np.ndarray
    targets: np.ndarray
    captions: list[str]

    def __len__(self) -> int:
        return len(self.captions)

    def save(self, path: str | Path) -> Path:
        """Write the scenes to ``path`` (``.npz``, renamed into place when complete); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")  # renamed when complete: no half-written cache
        np.savez(tmp, images=self.images, targets=self.targets, captions=np.asarray(self.captions, str))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SceneMaps":
        """Read scenes written by :meth:`save`."""
        with np.load(path) as z:
            return cls(z["images"], z["targets"], [str(c) for c in z["captions"]])


def _scene_chunk(args: tuple) -> SceneMaps:
    from hlmat_env.datasets import make_dataset
    from hlmat_env.masks import coverage_map
    from hlmat_env.wrappers import stack_image_mask

    spec, indices, obs_size, size = args
    data = make_dataset(spec) if isinstance(spec, str) else spec
    images, targets, captions = [], [], []
    for i in indices:
        s = data[int(i)]
        target = np.asarray(s.target)
        images.append(stack_image_mask(np.asarray(s.image), np.zeros(target.shape, np.uint8), obs_size)[:3])
        targets.append(coverage_map(target, size))
        captions.append(s.caption)
    return SceneMaps(np.stack(images), np.stack(targets), captions)


def build_scenes(dataset: Any, indices: Sequence[int], *, obs_size: int = 64, size: int = 48,
                 workers: int = 1) -> SceneMaps:
    """The scenes ``indices`` of ``dataset`` (a spec or a dataset object) as :class:`SceneMaps`, built by
    ``workers`` processes (contiguous chunks; the result does not depend on ``workers``)."""
    indices = list(indices)
    if not indices:
        raise ValueError("build_scenes: no scene indices")
    chunks = [(dataset, c, obs_size, size) for c in np.array_split(np.asarray(indices, int), max(1, workers))
              if len(c)]
    if len(chunks) == 1:
        parts = [_scene_chunk(chunks[0])]
    else:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(len(chunks)) as pool:
            parts = pool.map(_scene_chunk, chunks)
    return SceneMaps(np.concatenate([p.images for p in parts]), np.concatenate([p.targets for p in parts]),
                     [c for p in parts for c in p.captions])


def load_or_build_scenes(path: str | Path, dataset: Any, indices: Sequence[int], *, obs_size: int = 64,
                         size: int = 48, workers: int = 1) -> SceneMaps:
    """:func:`build_scenes`, cached at ``path`` (``.npz``, with a ``.json`` settings record beside it: a cache
    built from other scenes or sizes is refused, not silently reused)."""
    from agents.tools.settings_record import check_record, write_record

    path, indices = Path(path), list(indices)
    settings = {"dataset": dataset if isinstance(dataset, str) else type(dataset).__name__,
                "first": indices[0] if indices else None, "count": len(indices), "obs_size": obs_size, "size": size}
    record = path.with_suffix(".json")
    if path.exists():
        check_record(record, settings, f"the scene cache {path}")
        return SceneMaps.load(path)
    scenes = build_scenes(dataset, indices, obs_size=obs_size, size=size, workers=workers)
    scenes.save(path)
    write_record(record, settings)
    return scenes


def trunk_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8/float (0-255) ``(B, 3, O, O)`` -> float 0-255 ``(B, 3, size, size)``, area-resampled like
    :meth:`agents.ppo.grounded.GroundedClickNet.ground` (channels-last: faster convolutions on CPU)."""
    x = images.float()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=size, mode="area")
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def pointing_accuracy(net: PRMNet, scenes: SceneMaps, flips: int = 1, batch_size: int = 100) -> float:
    """Percentage of scenes whose target map (mean over the first ``flips`` flips) peaks on a pixel the
    target covers for more than half: does the trunk find the described object?"""
    was_training = net.training
    net.eval()
    caps = caption_table(scenes.captions, net.config.caption_dim)
    hits = 0
    for s in range(0, len(scenes), batch_size):
        x = trunk_input(torch.from_numpy(scenes.images[s:s + batch_size]), net.config.size)
        total = 0
        for f in range(flips):
            code = net.scene(flip_maps(x, f), caps[s:s + batch_size, f])
            total = total + torch.sigmoid(flip_maps(code.logits, f))
        peak = total.flatten(1).argmax(1, keepdim=True)
        hits += int((torch.from_numpy(scenes.targets[s:s + batch_size]).flatten(1).gather(1, peak) > 127).sum())
    net.train(was_training)
    return 100.0 * hits / len(scenes)


def map_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE of the target-map logits against the coverage in [0, 1] plus one minus their fuzzy IoU."""
    return (F.binary_cross_entropy_with_logits(logits, targets)
            + (1 - fuzzy_iou(torch.sigmoid(logits), targets)).mean())


@dataclass
class TrunkSettings:
    """Optimisation settings of :func:`train_trunk` (saved in the checkpoint's metrics)."""

    steps: int = 6000
    batch_size: int = 32  # per process
    lr: float = 5e-3
    weight_decay: float = 1e-4
    seed: int = 0
    checkpoint_every: int = 500


def train_trunk(scenes: SceneMaps, out: str | Path, *, config: PRMConfig = PRMConfig(size=48),
                settings: TrunkSettings = TrunkSettings(), workers: int = 1, val: SceneMaps | None = None,
                resume: bool = False, progress: bool = True) -> Path:
    """Train a trunk on ``scenes`` for ``settings.steps`` steps and write ``out/prm.pt`` (with metrics: the
    settings, the final training loss and, with ``val``, :func:`pointing_accuracy` with 1 and 4 flips) and
    ``out/trunk_log.json`` (loss every 100 steps). Returns the checkpoint's path.

    Args:
        scenes: training scenes (:func:`build_scenes`, images at the observation size).
        config: the trunk's :class:`PRMConfig`; its ``size`` is the trunk's input size.
        workers: data-parallel processes (one torch thread each); the global batch is
            ``workers * settings.batch_size``.
        resume: continue from ``out/trunk_checkpoint.pt`` when it exists (same settings required).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        (out / CHECKPOINT).unlink(missing_ok=True)
    if workers <= 1:
        _train(0, 1, scenes, out, config, settings, None, progress)
    else:
        import torch.multiprocessing as tmp

        fd, init = tempfile.mkstemp(prefix="ddp_init_", dir=out)
        os.close(fd)
        os.unlink(init)  # gloo's file rendezvous wants a path that does not exist yet
        try:
            tmp.spawn(_train, args=(workers, scenes, out, config, settings, init, progress), nprocs=workers)
        finally:
            Path(init).unlink(missing_ok=True)
    net = PRMNet(config)
    state = torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)
    net.load_state_dict(state["model"])
    net.eval()
    metrics: dict[str, Any] = {"trunk_settings": settings.__dict__, "workers": workers, "scenes": len(scenes),
                               "final_loss": state["log"][-1]["loss"] if state["log"] else None}
    if val is not None:
        metrics["pointing"] = pointing_accuracy(net, val, 1)
        metrics["pointing_4_flips"] = pointing_accuracy(net, val, 4)
        log.info("trunk pointing accuracy on %d held-out scenes: %.1f%% (4 flips %.1f%%)", len(val),
                 metrics["pointing"], metrics["pointing_4_flips"])
    (out / "trunk_log.json").write_text(json.dumps(state["log"], indent=1) + "\n")
    return save_prm(net, out / "prm.pt", metrics)


def _train(rank: int, world: int, scenes: SceneMaps, out: Path, config: PRMConfig, settings: TrunkSettings,
           init: str | None, progress: bool) -> None:
    from tqdm.auto import tqdm

    torch.set_num_threads(1)
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    torch.manual_seed(settings.seed)
    net = PRMNet(config)
    for part in (net.verifier, net.correction):  # the IoU head gets no gradient from the map loss
        part.requires_grad_(False)
    net.train()
    model: torch.nn.Module = _TrunkMaps(net)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model)  # averages the processes' gradients in backward()
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=max(1, settings.steps),
                                                pct_start=0.15)
    step, history = 0, []
    ckpt = out / CHECKPOINT
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state["settings"] != settings.__dict__ or state["config"] != config.to_dict() or state["world"] != world:
            raise ValueError(f"{ckpt} was written with other settings; remove it or train without --resume")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, history = state["step"], state["log"]
    caps = caption_table(scenes.captions, config.caption_dim)
    n, global_batch = len(scenes), settings.batch_size * world
    per_epoch = max(1, n // global_batch)
    bar = tqdm(total=settings.steps, initial=step, desc="train trunk", unit="step", disable=not progress or rank)
    running = []
    while step < settings.steps:
        epoch, k = divmod(step, per_epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(settings.seed * 100_003 + epoch))
        idx = order[k * global_batch:(k + 1) * global_batch][rank::world]
        gen = torch.Generator().manual_seed(((settings.seed * 1_000_003 + step) * 64 + rank))
        flips = torch.randint(0, 4, (len(idx),), generator=gen)
        targets = torch.from_numpy(scenes.targets[idx.numpy()]).float() / 255.0
        images, (targets,) = augment(torch.from_numpy(scenes.images[idx.numpy()]), [targets], flips, gen)
        loss = map_loss(model(trunk_input(images, config.size), caps[idx, flips]), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        running.append(loss.item())
        bar.update(1)
        if step % 100 == 0 or step == settings.steps:
            history.append({"step": step, "loss": float(np.mean(running))})
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
            running = []
        if rank == 0 and (step % settings.checkpoint_every == 0 or step == settings.steps):
            tmp_path = ckpt.with_name(ckpt.name + ".tmp")
            torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "step": step, "log": history, "settings": settings.__dict__, "config": config.to_dict(),
                        "world": world}, tmp_path)
            tmp_path.replace(ckpt)  # atomic: a kill never leaves a half-written checkpoint
    bar.close()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


class _TrunkMaps(torch.nn.Module):
    """The trunk's map logits as ``forward`` (what DistributedDataParallel wraps)."""

    def __init__(self, net: PRMNet):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        return self.net.scene(images, captions).logits
