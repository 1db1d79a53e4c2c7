"""Training, evaluation, saving and loading of the learned PRM (:class:`agents.prm.model.PRMNet`).

Checkpoint (``prm.pt``): ``{"config": PRMConfig dict, "state_dict": ..., "metrics": {...}}``, loaded with
``map_location="cpu"``.
"""
from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from agents.prm.data import PRMData
from agents.prm.model import PRMConfig, PRMNet, caption_features, fuzzy_iou

log = logging.getLogger(__name__)


_FLIPS = ({"left": "right", "right": "left"}, {"above": "below", "below": "above", "top": "bottom",
                                               "bottom": "top"})


def flip_caption(caption: str, horizontal: bool, vertical: bool) -> str:
    """``caption`` with its relation words swapped to stay true after a horizontal (left/right) and/or
    vertical (above/below, top/bottom) flip of the image. Lower-cased, tokens joined by single spaces."""
    words = "".join(ch if ch.isalnum() else " " for ch in caption.lower()).split()
    for on, table in ((horizontal, _FLIPS[0]), (vertical, _FLIPS[1])):
        if on:
            words = [table.get(w, w) for w in words]
    return " ".join(words)


def caption_table(captions: Sequence[str], dim: int = 96) -> torch.Tensor:
    """Caption features of every scene under the 4 flip combinations: float ``(M, 4, caption_len)``, index
    ``horizontal + 2 * vertical``."""
    return torch.from_numpy(np.stack([np.stack([caption_features(flip_caption(c, bool(f & 1), bool(f & 2)), dim)
                                                for f in range(4)]) for c in captions]))


def augment(images: torch.Tensor, maps: Sequence[torch.Tensor], flips: torch.Tensor,
            gen: torch.Generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Label-preserving augmentation of a batch of scenes: flips (``flips`` int ``(B,)``, bit 0 horizontal,
    bit 1 vertical; the caption is flipped by the caller, :func:`flip_caption`) of the images and of every map
    in ``maps`` (each ``(B, ..., S, S)``), and a mild brightness/contrast jitter shared by the RGB channels
    (contrast 0.85-1.15, brightness +-15: colours keep their names).

    Args:
        images: uint8 ``(B, 3, S, S)``.

    Returns:
        float images (0-255 scale) and the flipped maps.
    """
    x = images.float()
    maps = list(maps)
    for bit, dim in ((1, -1), (2, -2)):
        sel = (flips & bit) > 0
        x[sel] = x[sel].flip(dim)
        for k, m in enumerate(maps):
            m = m.clone()
            m[sel] = m[sel].flip(dim)
            maps[k] = m
    b = len(x)
    contrast = 0.85 + 0.3 * torch.rand(b, 1, 1, 1, generator=gen)
    bright = 30 * torch.rand(b, 1, 1, 1, generator=gen) - 15
    return ((x - 128) * contrast + 128 + bright).clamp(0, 255), maps


def flip_maps(x: torch.Tensor, flip: int) -> torch.Tensor:
    """``x`` (``(..., S, S)``) flipped as flip code ``flip`` says: bit 0 horizontal, bit 1 vertical."""
    dims = [d for bit, d in ((1, -1), (2, -2)) if flip & bit]
    return x.flip(dims) if dims else x


@torch.no_grad()
def predict(model: PRMNet, data: PRMData, batch_size: int = 64, flips: int = 1) -> np.ndarray:
    """IoU estimates float32 ``(N,)`` of every state of ``data`` (one trunk pass per scene, one verifier pass
    per state), averaged over the first ``flips`` (1-4) flips of image, mask and caption (test-time
    augmentation: the flips the PRM was trained with; 4 costs 4 passes and is a little more accurate)."""
    model.eval()
    caps = caption_table(data.captions, model.config.caption_dim)
    out = np.zeros(len(data), np.float32)
    for start in range(0, len(data.scene_ids), batch_size):
        sc = np.arange(start, min(len(data.scene_ids), start + batch_size))
        st = np.flatnonzero((data.state_scene >= sc[0]) & (data.state_scene <= sc[-1]))
        if not len(st):
            continue
        rows = torch.from_numpy(data.state_scene[st] - sc[0])
        images, masks = torch.from_numpy(data.images[sc]), torch.from_numpy(data.masks[st])
        total = torch.zeros(len(st))
        for f in range(flips):
            code = model.scene(flip_maps(images, f), caps[sc, f])
            total += model.iou(code.take(rows), flip_maps(masks, f))
        out[st] = (total / flips).numpy()
    return out


def regression_metrics(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Pearson, Spearman (scipy.stats) and MAE in IoU points (0-100) of estimates against true IoU."""
    from scipy.stats import pearsonr, spearmanr

    pred, labels = np.asarray(pred, np.float64), np.asarray(labels, np.float64)
    const = len(labels) < 2 or np.ptp(pred) == 0 or np.ptp(labels) == 0
    return {
        "n": float(len(labels)),
        "pearson": float("nan") if const else float(pearsonr(pred, labels)[0]),
        "spearman": float("nan") if const else float(spearmanr(pred, labels)[0]),
        "mae": float(100 * np.mean(np.abs(pred - labels))) if len(labels) else float("nan"),
    }


def evaluate_prm(model: PRMNet, data: PRMData, train_mean: float | None = None, flips: int = 1) -> dict[str, float]:
    """:func:`regression_metrics` of :func:`predict` (with ``flips``) on ``data``, plus ``mae_constant``: the
    MAE of always predicting ``train_mean`` (the baseline a useful PRM must beat) when given."""
    m = regression_metrics(predict(model, data, flips=flips), data.labels)
    if train_mean is not None:
        m["mae_constant"] = float(100 * np.mean(np.abs(data.labels - train_mean)))
    return m


def train_prm(train: PRMData, val: PRMData | None = None, *, config: PRMConfig = PRMConfig(), epochs: int = 16,
              batch_size: int = 32, states_per_scene: int = 8, lr: float = 3e-3, weight_decay: float = 1e-4,
              iou_weight: float = 1.0, iou_loss: str = "l1", augment_data: bool = True,
              caption_dropout: float = 0.0, seed: int = 0, device: str = "cpu",
              progress: bool = False) -> tuple[PRMNet, dict[str, Any]]:
    """Fit a :class:`PRMNet`: the map loss (BCE of the target map against the downsampled target plus one minus
    their fuzzy IoU: dense grounding supervision) plus ``iou_weight`` times the error of the IoU
    estimate (``iou_loss``: "mse" squared, "l1" smooth absolute, Huber with beta 0.02) (AdamW, one-cycle
    schedule).

    An epoch visits every training scene once, in batches of ``batch_size`` scenes; each scene contributes its
    target map and ``states_per_scene`` of its states (drawn at random, with replacement when it has fewer),
    which share the scene's trunk pass.

    Args:
        train: training scenes and states.
        val: the **selection** split: evaluated after every epoch, and the returned weights are those of the
            epoch with the lowest MAE on it (early stopping at the best epoch). Report final numbers on a
            third split that played no part in training or selection.
        augment_data: flips (with the caption's relation words swapped) and a brightness/contrast jitter
            (:func:`augment`).
        caption_dropout: share of the scenes of each batch shown with an empty caption (drawn per batch):
            the states of data without descriptions (folder sets, the first-click protocol), where the PRM
            must judge the mask without being told which object is meant.

    Returns:
        The model (eval mode, on CPU) and a history ``{"train_loss": [...], "train_bce": [...] (map loss),
        "train_iou": [...], "val": [metrics per epoch], "best_epoch": int, "train_mean": float}``.
    """
    from tqdm.auto import tqdm

    if iou_loss not in ("mse", "l1"):
        raise ValueError(f"iou_loss must be 'mse' or 'l1', got {iou_loss!r}")
    if not 0.0 <= caption_dropout <= 1.0:
        raise ValueError(f"caption_dropout must be in [0, 1], got {caption_dropout!r}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = PRMNet(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    caps = caption_table(train.captions, config.caption_dim)
    no_caption = caption_table([""], config.caption_dim)[0, 0]
    by_scene = [[] for _ in train.scene_ids]
    for i, sc in enumerate(train.state_scene):
        by_scene[sc].append(i)
    scenes = np.array([i for i, st in enumerate(by_scene) if st])
    steps = epochs * math.ceil(len(scenes) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps), pct_start=0.15)
    history: dict[str, Any] = {"train_loss": [], "train_bce": [], "train_iou": [], "val": [],
                               "best_epoch": epochs - 1, "train_mean": float(train.labels.mean())}
    best_mae, best_state = float("inf"), None
    for epoch in tqdm(range(epochs), desc="train PRM", disable=not progress, unit="epoch"):
        model.train()
        order = rng.permutation(scenes)
        sums = np.zeros(3)
        for start in range(0, len(order), batch_size):
            sc = order[start:start + batch_size]
            st = np.array([rng.choice(by_scene[i], states_per_scene) for i in sc])  # (b, k)
            flips = (torch.randint(0, 4, (len(sc),), generator=gen) if augment_data
                     else torch.zeros(len(sc), dtype=torch.long))
            masks = torch.from_numpy(train.masks[st])  # (b, k, S, S)
            targets = torch.from_numpy(train.targets[sc]).float() / 255.0
            images = torch.from_numpy(train.images[sc])
            if augment_data:
                images, (masks, targets) = augment(images, [masks, targets], flips, gen)
            cap = caps[torch.from_numpy(sc), flips]
            if caption_dropout > 0:
                drop = torch.rand(len(sc), generator=gen) < caption_dropout
                cap = torch.where(drop[:, None], no_caption, cap)
            y = torch.from_numpy(train.labels[st]).reshape(-1)
            images, masks, targets, cap, y = (t.to(device) for t in (images, masks, targets, cap, y))
            code = model.scene(images, cap)
            logits = code.logits
            rows = torch.arange(len(sc), device=logits.device).repeat_interleave(states_per_scene)
            pred = model.iou(code.take(rows), masks.reshape(-1, *masks.shape[2:]))
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
            bce = bce + (1 - fuzzy_iou(torch.sigmoid(logits), targets)).mean()  # the map's IoU with the target
            iou_err = (torch.nn.functional.mse_loss(pred, y) if iou_loss == "mse"
                       else torch.nn.functional.smooth_l1_loss(pred, y, beta=0.02))
            loss = bce + iou_weight * iou_err
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            sums += np.array([loss.item(), bce.item(), iou_err.item()]) * len(sc)
        for key, v in zip(("train_loss", "train_bce", "train_iou"), sums / len(scenes)):
            history[key].append(float(v))
        if val is not None:
            model.cpu()
            m = evaluate_prm(model, val, history["train_mean"])
            history["val"].append(m)
            if m["mae"] < best_mae:
                best_mae, best_state, history["best_epoch"] = m["mae"], copy.deepcopy(model.state_dict()), epoch
            model.to(device)
            line = (f"epoch {epoch + 1}: train loss {history['train_loss'][-1]:.4f} (map "
                    f"{history['train_bce'][-1]:.4f}, IoU error {history['train_iou'][-1]:.4f}); selection Pearson "
                    f"{m['pearson']:.3f}, MAE {m['mae']:.2f}")
            log.info(line)
            if progress:
                tqdm.write(line)
    model.cpu()
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), history


def save_prm(model: PRMNet, path: str | Path, metrics: dict[str, Any] | None = None) -> Path:
    """Write the checkpoint (config, weights, metrics) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict(), "metrics": metrics or {}},
               path)
    return path


def checkpoint_metrics(path: str | Path) -> dict[str, Any]:
    """The metrics saved with a checkpoint (:func:`save_prm`; a folder means its ``prm.pt``): train-prm's
    held-out report and ``train_mean`` (the mean training label, the constant predictor's estimate)."""
    path = Path(path)
    ckpt = torch.load(path / "prm.pt" if path.is_dir() else path, map_location="cpu", weights_only=True)
    return dict(ckpt.get("metrics") or {})


def load_prm_net(path: str | Path) -> PRMNet:
    """Load a checkpoint written by :func:`save_prm` (a folder means its ``prm.pt``); eval mode, CPU."""
    path = Path(path)
    if path.is_dir():
        path = path / "prm.pt"
    if not path.is_file():
        raise FileNotFoundError(f"PRM checkpoint not found: {path} (train one with `hlmat train-prm`)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = PRMNet(PRMConfig(**ckpt["config"]))
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError, EOFError) as e:
        raise ValueError(f"{path} is not a PRM checkpoint of this hlmat version (save_prm with the current PRMNet; "
                         f"retrain with `hlmat train-prm`): {e}") from None
    return model.eval()
