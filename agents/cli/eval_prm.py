"""``hlmat eval-prm``: held-out Pearson, Spearman and MAE of PRM checkpoints and of their mean on saved states."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat eval-prm`` and its flags."""
    p = subparsers.add_parser(
        "eval-prm", help="score saved PRM states with one or several PRMs (and their mean)",
        description="Evaluate PRM checkpoints on saved states (a PRMData .npz, e.g. the report.npz that "
                    "train-prm --cache writes): Pearson, Spearman and MAE (IoU points) of each checkpoint and, "
                    "for several, of their mean estimate (what --prm A,B uses).")
    p.add_argument("--prm", required=True, help="checkpoint(s), comma-separated")
    p.add_argument("--states", required=True, help="PRMData .npz with true-IoU labels (train-prm --cache DIR: "
                                                   "DIR/report.npz holds the held-out report states)")
    p.add_argument("--flips", type=int, default=4, help="flips averaged per estimate, 1-4 (default: 4, as "
                                                        "the scorer)")
    p.add_argument("--out", default=None, help="also write the metrics as JSON here")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat eval-prm`` with the parsed ``args``; returns the exit code."""
    import json
    from pathlib import Path

    import numpy as np
    import torch

    from agents.prm.scorer import checkpoint_paths
    from agents.prm.data import PRMData
    from agents.prm.train import load_prm_net, predict, regression_metrics

    torch.set_num_threads(1)
    paths = checkpoint_paths(args.prm)
    if not 1 <= args.flips <= 4:
        raise SystemExit(f"--flips must be 1-4, got {args.flips}")
    data = PRMData.load(args.states)
    preds = {p: predict(load_prm_net(p), data, flips=args.flips) for p in paths}
    rows = {p: regression_metrics(v, data.labels) for p, v in preds.items()}
    if len(paths) > 1:
        rows["mean of all"] = regression_metrics(np.mean(list(preds.values()), axis=0), data.labels)
    print(f"{len(data)} states of {len(data.scene_ids)} scenes, {args.flips} flip(s) per estimate")
    print("| PRM | Pearson | Spearman | MAE |\n|---|---|---|---|")
    for name, m in rows.items():
        print(f"| {name} | {m['pearson']:.3f} | {m['spearman']:.3f} | {m['mae']:.2f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0
