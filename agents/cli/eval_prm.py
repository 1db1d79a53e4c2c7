"""``hlmat eval-prm``: held-out Pearson, Spearman and MAE of PRM checkpoints and of their mean on saved states,
or on states it builds from a dataset (real photos: ``folder:`` and ``coco:`` sets)."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat eval-prm`` and its flags."""
    p = subparsers.add_parser(
        "eval-prm", help="score PRM states (saved, or built from a dataset) with one or several PRMs (and their mean)",
        description="Evaluate PRM checkpoints on labelled states: Pearson, Spearman and MAE (IoU points) of each "
                    "checkpoint and, for several, of their mean estimate (what --prm A,B uses), next to the MAE "
                    "of a constant predictor (the PRM's training mean, when its checkpoint records it). The "
                    "states are a PRMData .npz (e.g. the report.npz that train-prm --cache writes), or are built "
                    "from --dataset with train-prm's builder (noisy rollouts from --starts, degraded targets, "
                    "box, target, single random clicks) and saved to --states for the next run.")
    p.add_argument("--prm", required=True, help="checkpoint(s), comma-separated; 'default' is the shipped PRM")
    p.add_argument("--states", default=None,
                   help="PRMData .npz with true-IoU labels; with --dataset, built there when missing (a settings "
                        "record beside it refuses a reuse made with other settings)")
    p.add_argument("--dataset", default=None, help="build the states from this dataset spec (e.g. "
                                                   "folder:../shared/data/grabcut)")
    p.add_argument("--limit", type=int, default=None, help="first N samples of --dataset (default: all)")
    p.add_argument("--starts", default="robot,box", metavar="S[,S...]",
                   help="rollout start states of the built states: empty, robot, box (default: robot,box: the "
                        "first-click and box protocols)")
    p.add_argument("--rollout-clicks", type=int, default=4, help="clicks per noisy rollout (default: 4)")
    p.add_argument("--n-degraded", type=int, default=5, help="degraded targets per sample (default: 5)")
    p.add_argument("--single-clicks", type=int, default=1,
                   help="masks of one random positive click per sample (default: 1)")
    p.add_argument("--seed", type=int, default=1, help="seed of the built states (default: 1)")
    p.add_argument("--segmenter", default="default", help="segmenter of the rollouts (default: default)")
    p.add_argument("--workers", type=int, default=1, help="processes building states (default: 1)")
    p.add_argument("--captions", choices=("keep", "empty"), default="keep",
                   help="empty: score every state with an empty caption (a set without descriptions, e.g. the "
                        "folder: form of a set whose states were built with ?captions=class; the segmenter "
                        "never reads captions, so the masks are the same) (default: keep)")
    p.add_argument("--by-source", action="store_true", help="also one row per state kind (rollout, box, ...)")
    p.add_argument("--flips", type=int, default=4, help="flips averaged per estimate, 1-4 (default: 4, as "
                                                        "the scorer)")
    p.add_argument("--out", default=None, help="also write the metrics as JSON here")
    return p


def _states(args: argparse.Namespace) -> Any:
    """The labelled states: loaded from ``--states`` or built from ``--dataset`` (and saved to ``--states``)."""
    from pathlib import Path

    from agents.prm.data import PRMData, build_prm_dataset, check_starts
    from agents.tools.settings_record import check_record, write_record
    from hlmat_env.segmenters import segmenter_version

    path = Path(args.states) if args.states else None
    if args.dataset is None:
        if path is None:
            raise SystemExit("eval-prm needs --states FILE, or --dataset SPEC to build the states from")
        return PRMData.load(path)
    starts = check_starts(args.starts)  # InvalidOption: the CLI prints its message
    from agents.prm.scorer import checkpoint_paths
    from agents.prm.train import load_prm_net

    size = load_prm_net(checkpoint_paths(args.prm)[0]).config
    recipe = {"size": size.size, "dataset": args.dataset, "limit": args.limit, "starts": list(starts),
              "rollout_clicks": args.rollout_clicks, "n_degraded": args.n_degraded,
              "single_clicks": args.single_clicks, "seed": args.seed, "segmenter": args.segmenter,
              "segmenter_version": segmenter_version(args.segmenter)}
    if path is not None and path.is_file():
        check_record(path.with_suffix(".json"), recipe, f"the PRM states {path}")
        return PRMData.load(path)
    data = build_prm_dataset(args.dataset, limit=args.limit, segmenter=args.segmenter, config=size,
                             rollout_clicks=args.rollout_clicks, n_degraded=args.n_degraded,
                             single_clicks=args.single_clicks, starts=starts, seed=args.seed,
                             workers=args.workers, progress=True)
    if path is not None:
        data.save(path)
        write_record(path.with_suffix(".json"), recipe)
    return data


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat eval-prm`` with the parsed ``args``; returns the exit code."""
    import json
    from pathlib import Path

    import numpy as np
    import torch

    from agents.prm.scorer import checkpoint_paths
    from agents.prm.train import checkpoint_metrics, load_prm_net, predict, regression_metrics

    torch.set_num_threads(1)
    paths = checkpoint_paths(args.prm)
    if not 1 <= args.flips <= 4:
        raise SystemExit(f"--flips must be 1-4, got {args.flips}")
    data = _states(args)
    if args.captions == "empty":
        data.captions = [""] * len(data.captions)
    nets = {p: load_prm_net(p) for p in paths}
    for p, net in nets.items():
        if net.config.size != data.images.shape[-1]:
            raise SystemExit(f"{p} reads {net.config.size}-pixel states, the states are "
                             f"{data.images.shape[-1]}-pixel")
    preds = {p: predict(net, data, flips=args.flips) for p, net in nets.items()}
    if len(paths) > 1:
        preds["mean of all"] = np.mean(list(preds.values()), axis=0)
    means = [checkpoint_metrics(p).get("train_mean") for p in paths]
    const = float(np.mean(means)) if all(m is not None for m in means) else None
    sources = np.asarray(data.sources)
    groups = {"all": np.ones(len(data), bool)}
    if args.by_source:
        groups.update({s: sources == s for s in sorted(set(data.sources))})
    rows: dict[str, Any] = {}
    for name, v in preds.items():
        for g, sel in groups.items():
            m = regression_metrics(v[sel], data.labels[sel])
            if const is not None:
                m["mae_constant"] = float(100 * np.mean(np.abs(data.labels[sel] - const)))
            m["mean_label"] = float(np.mean(data.labels[sel]))
            rows[name if g == "all" else f"{name} [{g}]"] = m
    print(f"{len(data)} states of {len(data.scene_ids)} scenes, {args.flips} flip(s) per estimate, captions "
          f"{args.captions}" + ("" if const is None else f"; constant predictor: the training mean {const:.3f}"))
    print("| PRM | states | Pearson | Spearman | MAE | constant MAE |\n|---|---|---|---|---|---|")
    for name, m in rows.items():
        c = m.get("mae_constant", float("nan"))
        print(f"| {name} | {int(m['n'])} | {m['pearson']:.3f} | {m['spearman']:.3f} | {m['mae']:.2f} | {c:.2f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0
