"""Training the step judge (:mod:`agents.ppo.judge`) on recorded transitions (:mod:`agents.ppo.judge_data`).

Two commands, one torch thread each (the recipe of the shipped judge is in docs/models/ppo.md)::

    python -m agents.ppo.judge_train record --dataset SPEC --indices 0:800 --episodes 500 --out T.npz
    python -m agents.ppo.judge_train train T.npz [T2.npz ...] --out judge.pt
    python -m agents.ppo.judge_train stats T.npz [T2.npz ...]    # what the recorded clicks did
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from agents.ppo.judge import StepJudge, judge_loss, save_judge

log = logging.getLogger(__name__)


def train_judge(data: dict[str, np.ndarray], *, epochs: int = 30, batch_size: int = 128, lr: float = 2e-3,
                width: int = 24, margin: float = 0.002, val_frac: float = 0.1, seed: int = 0,
                progress: bool = True) -> tuple[StepJudge, dict[str, Any]]:
    """Fit a :class:`StepJudge` to transitions ``data`` (``planes``, ``stats``, ``delta``), holding out the last
    ``val_frac`` of the *episodes' samples* (by ``index`` order of appearance) for the reported metrics.

    Returns:
        The judge and metrics: held-out accuracy of "delta > margin", the precision of the clicks it accepts
        (p > 0.5), and the mean IoU change of accepted and of rejected clicks.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    planes, stats = torch.as_tensor(data["planes"]), torch.as_tensor(data["stats"])
    delta = torch.as_tensor(data["delta"]).float()
    n = len(delta)
    n_val = int(round(val_frac * n))
    train_idx, val_idx = torch.arange(n - n_val), torch.arange(n - n_val, n)
    judge = StepJudge(width)
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * max(1, (len(train_idx) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for epoch in range(epochs):
        judge.train()
        perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
        total = 0.0
        for s in range(0, len(perm), batch_size):
            idx = perm[s:s + batch_size]
            x = planes[idx].float() / 255.0
            for dim in (-1, -2):
                if torch.rand((), generator=gen) < 0.5:
                    x = x.flip(dim)
            loss = judge_loss(judge, x, stats[idx], delta[idx], margin)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if progress:
            log.info("judge epoch %d: loss %.4f", epoch + 1, total / len(perm))
    metrics = evaluate_judge(judge, data, val_idx.numpy(), margin) if n_val else {}
    metrics.update(train=len(train_idx), val=n_val)
    return judge, metrics


def evaluate_judge(judge: StepJudge, data: dict[str, np.ndarray], idx: np.ndarray, margin: float = 0.002,
                   threshold: float = 0.5) -> dict[str, float]:
    """Held-out metrics of ``judge`` on rows ``idx`` of ``data`` (see :func:`train_judge`)."""
    p = judge.prob(data["planes"][idx], data["stats"][idx])
    d = data["delta"][idx]
    accept = p > threshold
    return {"accuracy": float(np.mean(accept == (d > margin))),
            "accepted": float(accept.mean()),
            "precision": float(np.mean(d[accept] > margin)) if accept.any() else float("nan"),
            "mean_delta_accepted": float(d[accept].mean()) if accept.any() else float("nan"),
            "mean_delta_rejected": float(d[~accept].mean()) if (~accept).any() else float("nan"),
            "base_rate": float(np.mean(d > margin))}


def load_transitions(paths: Sequence[str | Path]) -> dict[str, np.ndarray]:
    """The row-wise union of transition files written by :func:`agents.ppo.judge_data.save_transitions`."""
    parts = []
    for p in paths:
        with np.load(p) as z:
            parts.append(dict(z))
    return {k: np.concatenate([d[k] for d in parts]) for k in parts[0]}


def transition_stats(data: dict[str, np.ndarray], margin: float = 0.002) -> list[dict[str, Any]]:
    """Per protocol start (robot user's first click, box) and click source (:data:`SOURCES`): the number of
    transitions, the share that raised the IoU by more than ``margin`` and the mean IoU change."""
    from agents.ppo.judge_data import SOURCES

    rows = []
    for box in (False, True):
        for k, source in enumerate(SOURCES):
            sel = (data["box"] == box) & (data["source"] == k)
            if sel.any():
                d = data["delta"][sel]
                rows.append({"start": "box" if box else "first click", "source": source, "n": int(sel.sum()),
                             "raised": float(np.mean(d > margin)), "mean_change": float(d.mean())})
    return rows


def _parse_indices(text: str, n: int) -> list[int]:
    a, _, b = text.partition(":")
    return list(range(int(a or 0), min(n, int(b) if b else n)))


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m agents.ppo.judge_train", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="record transitions")
    r.add_argument("--dataset", required=True)
    r.add_argument("--indices", default=":", help="START:STOP of the samples episodes are drawn from")
    r.add_argument("--episodes", type=int, default=500)
    r.add_argument("--proposer", default=None, help="PPO model whose clicks are judged (default: shipped)")
    r.add_argument("--box-frac", type=float, default=0.4)
    r.add_argument("--drop-caption", type=float, default=1.0)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", required=True)
    t = sub.add_parser("train", help="train the judge")
    t.add_argument("data", nargs="+")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--width", type=int, default=24)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True)
    st = sub.add_parser("stats", help="what the recorded clicks did, per start and click source")
    st.add_argument("data", nargs="+")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    t0 = time.process_time()
    if args.cmd == "stats":
        for row in transition_stats(load_transitions(args.data)):
            print(json.dumps(row))
        return 0
    if args.cmd == "record":
        from agents.ppo.agent import PPOAgent
        from agents.ppo.judge_data import record_transitions, save_transitions
        from hlmat_env.datasets import make_dataset

        n = len(make_dataset(args.dataset))
        pool = _parse_indices(args.indices, n)
        rng = np.random.default_rng(args.seed)
        indices = [int(i) for i in rng.choice(pool, size=args.episodes, replace=args.episodes > len(pool))]
        proposer = PPOAgent(args.proposer, trunk_flips=1)
        data = record_transitions(args.dataset, indices, proposer=proposer, box_frac=args.box_frac,
                                  drop_caption=args.drop_caption, seed=args.seed)
        save_transitions(data, args.out)
        Path(args.out).with_suffix(".json").write_text(json.dumps(
            {**vars(args), "rows": len(data["delta"]), "cpu_s": time.process_time() - t0}, indent=1))
        log.info("%d transitions in %.0f CPU-s -> %s", len(data["delta"]), time.process_time() - t0, args.out)
    else:
        data = load_transitions(args.data)
        judge, metrics = train_judge(data, epochs=args.epochs, width=args.width, lr=args.lr, seed=args.seed)
        metrics["cpu_s"] = time.process_time() - t0
        save_judge(judge, args.out, {"settings": vars(args), "metrics": metrics})
        log.info("judge metrics: %s", json.dumps(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
