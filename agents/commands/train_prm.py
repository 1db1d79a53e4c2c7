"""``hlmat train-prm``: train the learned process reward model and report held-out Pearson, Spearman and MAE."""
from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train-prm", help="train the process reward model (IoU estimator); prints held-out Pearson/Spearman/MAE",
        description="Build PRM training states (demonstration masks from --data plus noisy-policy rollouts, "
                    "degraded targets and boxes), train the value head, evaluate it on states of "
                    "--val-dataset, and write DIR/prm.pt and DIR/metrics.json.")
    p.add_argument("--data", default=None,
                   help="demonstrations folder/JSONL (hlmat generate); without it, states come from --dataset")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--dataset", default="synthetic:train",
                   help="training samples when --data is absent or its records name no dataset "
                        "(default: synthetic:train)")
    p.add_argument("--limit", type=int, default=600, help="training samples (default: 600)")
    p.add_argument("--val-dataset", default="synthetic:val", help="held-out samples (default: synthetic:val)")
    p.add_argument("--val-limit", type=int, default=100, help="held-out samples (default: 100)")
    p.add_argument("--segmenter", default="default", help="segmenter of the rollouts (default: default)")
    p.add_argument("--epochs", type=int, default=15, help="training epochs (default: 15)")
    p.add_argument("--size", type=int, default=64, help="input resolution of both views (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from agents.prm_data import build_prm_dataset
    from agents.prm_model import PRMConfig
    from agents.prm_train import evaluate_prm, save_prm, train_prm

    torch.set_num_threads(1)
    config = PRMConfig(size=args.size)
    show = not args.no_progress
    train = build_prm_dataset(args.dataset, segmenter=args.segmenter, demos=args.data, limit=args.limit,
                              config=config, seed=args.seed, progress=show)
    val = build_prm_dataset(args.val_dataset, segmenter=args.segmenter, limit=args.val_limit, config=config,
                            seed=args.seed + 1, progress=show)
    print(f"PRM states: {len(train)} train, {len(val)} held-out ({args.val_dataset}, {args.val_limit} samples)")
    model, history = train_prm(train, val, config=config, epochs=args.epochs, seed=args.seed, progress=show)
    metrics = evaluate_prm(model, val, history["train_mean"])
    out = Path(args.out)
    save_prm(model, out / "prm.pt", metrics)
    (out / "metrics.json").write_text(json.dumps({"heldout": metrics, "history": history,
                                                  "train_states": len(train)}, indent=1) + "\n")
    print(f"held-out: Pearson {metrics['pearson']:.3f}, Spearman {metrics['spearman']:.3f}, "
          f"MAE {metrics['mae']:.2f} IoU points (constant predictor: {metrics['mae_constant']:.2f}), "
          f"n={int(metrics['n'])}")
    print(f"wrote {out / 'prm.pt'} and {out / 'metrics.json'}")
    return 0
