"""``hlmat train-prm``: train the learned process reward model and report held-out Pearson, Spearman and MAE."""
from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat train-prm`` and its flags."""
    p = subparsers.add_parser(
        "train-prm", help="train the process reward model (IoU estimator); prints held-out Pearson/Spearman/MAE",
        description="Build PRM training states (demonstration masks from --data plus noisy-policy rollouts, "
                    "degraded targets and boxes, and cheaper states of --extra-scenes more samples), train the "
                    "caption-conditioned target-map network and its IoU head keeping the epoch with the lowest MAE "
                    "on a selection split (--select-*), report Pearson/Spearman/MAE on a separate held-out "
                    "split (--val-*), and write DIR/prm.pt and DIR/metrics.json.")
    p.add_argument("--data", default=None,
                   help="demonstrations folder/JSONL (hlmat generate): their masks are added to the states "
                        "generated from the first --limit samples of --dataset")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--dataset", default="synthetic:train",
                   help="training samples when --data is absent or its records name no dataset "
                        "(default: synthetic:train)")
    p.add_argument("--limit", type=int, default=700,
                   help="training samples with noisy-policy rollout states (default: 700)")
    p.add_argument("--extra-scenes", type=int, default=7300, metavar="N",
                   help="N more training samples (after the first --limit) with cheaper states: degraded "
                        "targets, box, target (no segmenter calls) and --extra-single-clicks (default: 7300)")
    p.add_argument("--extra-single-clicks", type=int, default=2, metavar="K",
                   help="K masks of one random positive click for each of the --extra-scenes (K segmenter calls "
                        "each): wrong-object and background masks, which degraded targets never are (default: 2)")
    p.add_argument("--extra-dataset", action="append", default=[], metavar="SPEC",
                   help="another training dataset, mixed in (repeatable; e.g. a coco: spec of real photos): its "
                        "first --extra-limit samples get rollout states, the next --extra-scenes (as many as it has) the "
                        "cheaper states")
    p.add_argument("--extra-limit", type=int, default=400, metavar="N",
                   help="samples of each --extra-dataset with rollout states (default: 400)")
    p.add_argument("--starts", default="empty", metavar="S[,S...]",
                   help="start states of the noisy rollouts, comma-separated: empty, robot (click 1 is the robot "
                        "user's: the first-click protocol), box (the box protocol); two rollouts from each "
                        "(default: empty)")
    p.add_argument("--caption-dropout", type=float, default=0.0, metavar="P",
                   help="share of training scenes shown with an empty caption (per batch): states of sets "
                        "without descriptions, such as folder sets under the first-click protocol (default: 0)")
    p.add_argument("--val-dataset", default="synthetic:val", help="held-out samples (default: synthetic:val)")
    p.add_argument("--val-limit", type=int, default=100,
                   help="report on the first N held-out samples (default: 100)")
    p.add_argument("--select-dataset", default="synthetic:val",
                   help="selection split for early stopping (default: synthetic:val)")
    p.add_argument("--select-range", default="100:200", metavar="START:STOP",
                   help="samples of --select-dataset used for selection; must not overlap the report samples "
                        "(default: 100:200; 'none' keeps the last epoch)")
    p.add_argument("--select-from-train", type=int, default=100, metavar="N",
                   help="instead of --select-*, hold out the states of the last N rollout training samples "
                        "(of --dataset and of each --extra-dataset) as the selection split (default: 100; "
                        "0 = use --select-*)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="reuse/write the built states as DIR/{train,extra,select,report}.npz (and "
                        "DIR/mixK_{train,extra}.npz for the K-th --extra-dataset)")
    p.add_argument("--workers", type=int, default=1, help="processes building states (default: 1)")
    p.add_argument("--rollout-clicks", type=int, default=8, help="clicks per noisy rollout (default: 8)")
    p.add_argument("--n-degraded", type=int, default=5, help="degraded targets per sample (default: 5)")
    p.add_argument("--width", type=int, default=16, help="network width (default: 16)")
    p.add_argument("--verifier-width", type=int, default=16, help="width of the mask verifier (default: 16)")
    p.add_argument("--iou-loss", choices=("mse", "l1"), default="l1",
                   help="error of the IoU estimate: (smooth) absolute, or squared (default: l1)")
    p.add_argument("--iou-weight", type=float, default=1.0,
                   help="weight of the IoU error (default: 1.0; 2.0 was the measured weight of mse)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default: 3e-3)")
    p.add_argument("--states-per-scene", type=int, default=8,
                   help="states drawn per scene in a batch, sharing its trunk pass (default: 8)")
    p.add_argument("--no-augment", action="store_true", help="no flips / colour jitter")
    p.add_argument("--segmenter", default="default", help="segmenter of the rollouts (default: default)")
    p.add_argument("--epochs", type=int, default=16, help="training epochs, each a pass over the training scenes (default: 16)")
    p.add_argument("--size", type=int, default=64, help="input resolution (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the built states and of training (default: 0)")
    p.add_argument("--train-seed", type=int, default=None, metavar="S",
                   help="seed of the network's initialisation, batches and augmentation only (default: --seed): "
                        "reruns on the same cached states measure the spread between training runs")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def _range(text: str) -> range | None:
    if text == "none":
        return None
    try:
        start, stop = (int(v) for v in text.split(":"))
    except ValueError:
        raise SystemExit(f"--select-range must be START:STOP or none, got {text!r}") from None
    return range(start, stop)


def _dataset(spec: str, n: int) -> Any:
    """Dataset ``spec`` with at least ``n`` samples (the synthetic generator is asked for more if needed)."""
    from hlmat_env.datasets import make_dataset
    from hlmat_env.datasets.synthetic import SyntheticDataset

    ds = make_dataset(spec)
    if len(ds) < n and isinstance(ds, SyntheticDataset):
        ds = SyntheticDataset(ds.split, ds.seed, size=n)
    if len(ds) < n:
        raise SystemExit(f"{spec} has {len(ds)} samples; --limit + --extra-scenes needs {n}")
    return ds


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat train-prm`` with the parsed ``args``; returns the exit code."""
    from pathlib import Path

    import torch

    from agents.prm.data import PRMData, build_prm_dataset, check_starts, demo_states
    from agents.prm.model import PRMConfig
    from agents.prm.train import evaluate_prm, save_prm, train_prm
    from agents.tools.settings_record import check_record, write_record
    from hlmat_env.segmenters import segmenter_version

    torch.set_num_threads(1)
    starts = check_starts(args.starts)  # InvalidOption: the CLI prints its message
    if not 0.0 <= args.caption_dropout <= 1.0:
        raise SystemExit(f"--caption-dropout must be in [0, 1], got {args.caption_dropout}")
    config = PRMConfig(size=args.size, width=args.width, verifier_width=args.verifier_width)
    show = not args.no_progress
    select_ix = None if args.select_from_train else _range(args.select_range)
    if select_ix is not None and args.select_dataset == args.val_dataset and select_ix.start < args.val_limit:
        raise SystemExit(f"--select-range {args.select_range} overlaps the report samples 0:{args.val_limit} "
                         f"of {args.val_dataset}")
    common = dict(segmenter=args.segmenter, config=config, rollout_clicks=args.rollout_clicks,
                  n_degraded=args.n_degraded, workers=args.workers, progress=show, starts=starts)

    # every flag that changes the built states, and the segmenter's code version
    recipe = {k: v for k, v in vars(args).items()
              if k in ("dataset", "limit", "extra_scenes", "extra_single_clicks", "data", "val_dataset", "val_limit", "select_dataset",
                       "select_range", "select_from_train", "rollout_clicks", "n_degraded", "segmenter",
                       "size", "seed")}
    recipe["segmenter_version"] = segmenter_version(args.segmenter)
    if args.extra_dataset:  # recorded only when used, so caches of earlier runs stay valid
        recipe.update(extra_dataset=args.extra_dataset, extra_limit=args.extra_limit)
    if starts != ("empty",):
        recipe["starts"] = list(starts)

    def cached(name: str, build: Any) -> PRMData:
        path = Path(args.cache) / f"{name}.npz" if args.cache else None
        if path is not None and path.is_file():
            check_record(path.with_suffix(".json"), recipe, f"the cached PRM states {path}")
            return PRMData.load(path)
        data = build()
        if path is not None:
            data.save(path)
            write_record(path.with_suffix(".json"), recipe)
        return data

    train = cached("train", lambda: build_prm_dataset(args.dataset, limit=args.limit, seed=args.seed, **common))
    mixed = []  # (rollout states, cheap states) of each --extra-dataset
    for k, spec in enumerate(args.extra_dataset):
        n = len(_dataset(spec, 0))
        lim = min(args.extra_limit, n)
        roll = cached(f"mix{k}_train", lambda: build_prm_dataset(spec, limit=lim, seed=args.seed, **common))
        stop = min(n, lim + args.extra_scenes)
        rest = (cached(f"mix{k}_extra", lambda: build_prm_dataset(
            spec, range(lim, stop), seed=args.seed,
            **{**common, "rollout_clicks": 0, "single_clicks": args.extra_single_clicks})) if stop > lim else None)
        mixed.append((roll, rest))
    held: set[str] = set()
    if args.select_from_train:
        select_parts = []
        for part in [train] + [roll for roll, _ in mixed]:
            last = set(part.scene_ids[-args.select_from_train:])
            held |= last
            select_parts.append(part.split([sid in last for sid in part.scene_ids])[0])
        train = train.split([sid not in held for sid in train.scene_ids])[0]
        mixed = [(roll.split([sid not in held for sid in roll.scene_ids])[0], rest) for roll, rest in mixed]
        select = PRMData.concat(select_parts)
        where = f"last {args.select_from_train} rollout training samples of each training dataset"
    elif select_ix is not None:
        select = cached("select", lambda: build_prm_dataset(args.select_dataset, select_ix, seed=args.seed + 2,
                                                            **common))
        where = f"{args.select_dataset} {args.select_range}"
    else:
        select, where = None, "none"
    parts = [train]
    if args.extra_scenes > 0:
        extra_ix = range(args.limit, args.limit + args.extra_scenes)
        parts.append(cached("extra", lambda: build_prm_dataset(
            _dataset(args.dataset, extra_ix.stop), extra_ix, seed=args.seed,
            **{**common, "rollout_clicks": 0, "single_clicks": args.extra_single_clicks})))
    if args.data is not None:
        demos = cached("demos", lambda: demo_states(args.data, config, args.dataset))
        parts.append(demos.split([sid not in held for sid in demos.scene_ids])[0])
    parts += [p for pair in mixed for p in pair if p is not None]
    train = PRMData.concat(parts)
    print(f"PRM states: {len(train)} train ({len(train.scene_ids)} scenes), "
          f"{0 if select is None else len(select)} selection ({where})")
    model, history = train_prm(train, select, config=config, epochs=args.epochs, lr=args.lr,
                               seed=args.seed if args.train_seed is None else args.train_seed,
                               states_per_scene=args.states_per_scene, iou_loss=args.iou_loss,
                               iou_weight=args.iou_weight, augment_data=not args.no_augment,
                               caption_dropout=args.caption_dropout, progress=show)
    report = cached("report", lambda: build_prm_dataset(args.val_dataset, limit=args.val_limit,
                                                        seed=args.seed + 1, **common))
    print(f"held-out report states: {len(report)} ({args.val_dataset}, first {args.val_limit} samples)")
    metrics = evaluate_prm(model, report, history["train_mean"], flips=4)  # as LearnedPRM scores by default
    one_pass = evaluate_prm(model, report, history["train_mean"])
    metrics.update({f"{k}_1pass": v for k, v in one_pass.items() if k in ("pearson", "spearman", "mae")})
    out = Path(args.out)
    save_prm(model, out / "prm.pt", {**metrics, "train_mean": history["train_mean"]})
    (out / "metrics.json").write_text(json.dumps({"heldout": metrics, "history": history,
                                                  "train_states": len(train), "args": vars(args)}, indent=1) + "\n")
    print(f"best selection epoch {history['best_epoch'] + 1}/{args.epochs}")
    print(f"held-out: Pearson {metrics['pearson']:.3f}, Spearman {metrics['spearman']:.3f}, "
          f"MAE {metrics['mae']:.2f} IoU points (constant predictor: {metrics['mae_constant']:.2f}), "
          f"n={int(metrics['n'])}; averaged over 4 flips (the scorer's default); one pass: Pearson "
          f"{one_pass['pearson']:.3f}, MAE {one_pass['mae']:.2f}")
    print(f"wrote {out / 'prm.pt'} and {out / 'metrics.json'}")
    return 0
