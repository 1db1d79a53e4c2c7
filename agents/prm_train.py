"""Training, evaluation, saving and loading of the learned PRM (:class:`agents.prm_model.PRMNet`).

Checkpoint (``prm.pt``): ``{"config": PRMConfig dict, "state_dict": ..., "metrics": {...}}``, loaded with
``map_location="cpu"``.
"""
from __future__ import annotations

import copy
import logging
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.prm_data import PRMData
from agents.prm_model import PRMConfig, PRMNet

log = logging.getLogger(__name__)


def _tensors(data: PRMData, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
    return (torch.from_numpy(data.views[idx]), torch.from_numpy(data.scalars[idx]),
            torch.from_numpy(data.captions[idx]))


def _swap_pairs(caption_dim: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Caption buckets to swap under a horizontal flip (left/right) and a vertical one (above/below)."""
    def bucket(word: str) -> int:
        return zlib.crc32(word.encode("utf-8")) % caption_dim

    h = [(bucket("left"), bucket("right"))]
    v = [(bucket("above"), bucket("below"))]
    h = [p for p in h if p[0] != p[1]]
    used = {b for p in h for b in p}
    return h, [p for p in v if p[0] != p[1] and not used & set(p)]  # a shared bucket would mix the two


def augment(views: torch.Tensor, caps: torch.Tensor, gen: torch.Generator,
            swaps: tuple[list[tuple[int, int]], list[tuple[int, int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Label-preserving augmentation of a batch: random horizontal/vertical flips of both views (with the
    caption's left/right and above/below words swapped, so relations stay true) and a per-channel colour
    jitter of the RGB channels (contrast 0.8-1.2, brightness +-20). The mask channel is only flipped.

    Args:
        views: uint8 ``(B, 2, 4, S, S)``; caps: float ``(B, caption_dim)``.

    Returns:
        float views (0-255 scale) and captions, same shapes.
    """
    b = views.shape[0]
    x, caps = views.float(), caps.clone()
    for dim, pairs in ((-1, swaps[0]), (-2, swaps[1])):
        flip = torch.rand(b, generator=gen) < 0.5
        x[flip] = x[flip].flip(dim)
        for i, j in pairs:
            caps[flip, i], caps[flip, j] = caps[flip, j].clone(), caps[flip, i].clone()
    contrast = 0.8 + 0.4 * torch.rand(b, 1, 3, 1, 1, generator=gen)
    bright = 40 * torch.rand(b, 1, 3, 1, 1, generator=gen) - 20
    x[:, :, :3] = ((x[:, :, :3] - 128) * contrast + 128 + bright).clamp(0, 255)
    return x, caps


@torch.no_grad()
def predict(model: PRMNet, data: PRMData, batch_size: int = 256) -> np.ndarray:
    """IoU estimates float32 ``(N,)`` of every state of ``data``."""
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        idx = np.arange(start, min(len(data), start + batch_size))
        out.append(model(*_tensors(data, idx)).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


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


def evaluate_prm(model: PRMNet, data: PRMData, train_mean: float | None = None) -> dict[str, float]:
    """:func:`regression_metrics` on ``data``, plus ``mae_constant``: the MAE of always predicting
    ``train_mean`` (the baseline a useful PRM must beat) when given."""
    m = regression_metrics(predict(model, data), data.labels)
    if train_mean is not None:
        m["mae_constant"] = float(100 * np.mean(np.abs(data.labels - train_mean)))
    return m


def train_prm(train: PRMData, val: PRMData | None = None, *, config: PRMConfig = PRMConfig(), epochs: int = 15,
              batch_size: int = 128, lr: float = 2e-3, weight_decay: float = 1e-4, augment_data: bool = True,
              seed: int = 0, device: str = "cpu", progress: bool = False) -> tuple[PRMNet, dict[str, Any]]:
    """Fit a :class:`PRMNet` to ``train`` by mean squared error on the IoU (AdamW, one-cycle learning rate).

    Args:
        train: training states.
        val: the **selection** split: evaluated after every epoch, and the returned weights are those of the
            epoch with the lowest MAE on it (early stopping at the best epoch). Report final numbers on a
            third split that played no part in training or selection.
        augment_data: flips with caption relation swaps and colour jitter (:func:`augment`).

    Returns:
        The model (eval mode, on CPU) and a history ``{"train_loss": [...], "val": [metrics per epoch],
        "best_epoch": int, "train_mean": float}``.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    swaps = _swap_pairs(config.caption_dim)
    rng = np.random.default_rng(seed)
    model = PRMNet(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(train) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps), pct_start=0.15)
    labels = torch.from_numpy(train.labels)
    history: dict[str, Any] = {"train_loss": [], "val": [], "best_epoch": epochs - 1,
                               "train_mean": float(train.labels.mean())}
    best_mae, best_state = float("inf"), None
    for epoch in tqdm(range(epochs), desc="train PRM", disable=not progress, unit="epoch"):
        model.train()
        order = rng.permutation(len(train))
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = np.sort(order[start:start + batch_size])
            views, scalars, caps = _tensors(train, idx)
            if augment_data:
                views, caps = augment(views, caps, gen, swaps)
            views, scalars, caps, y = (t.to(device) for t in (views, scalars, caps, labels[idx]))
            loss = torch.nn.functional.mse_loss(model(views, scalars, caps), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        history["train_loss"].append(total / len(train))
        if val is not None:
            model.cpu()
            m = evaluate_prm(model, val, history["train_mean"])
            history["val"].append(m)
            if m["mae"] < best_mae:
                best_mae, best_state, history["best_epoch"] = m["mae"], copy.deepcopy(model.state_dict()), epoch
            model.to(device)
            log.info("epoch %d: train mse %.4f, selection %s", epoch, history["train_loss"][-1], m)
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
        raise ValueError(f"{path} is not a PRM checkpoint written by save_prm: {e}") from None
    return model.eval()
