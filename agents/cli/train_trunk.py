"""``hlmat train-trunk``: pretrain the PRM's grounding trunk on scenes alone (map loss), for ``train-ppo --trunk``."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat train-trunk`` and its flags."""
    p = subparsers.add_parser(
        "train-trunk", help="pretrain the grounding trunk on scenes (target-map loss only); train-ppo --trunk loads it",
        description="Builds (image, caption, target map) scenes (cached as DIR/scenes.npz), trains the PRM's "
                    "caption-conditioned U-Net on the target-map loss alone, data-parallel over --workers "
                    "processes, and writes DIR/prm.pt (an untrained IoU head: the fuzzy IoU of map and mask) with "
                    "the pointing accuracy on held-out scenes (does the map's peak fall on the target?). "
                    "A killed run continues with --resume.")
    p.add_argument("--dataset", default="synthetic:train?size=20000",
                   help="training scenes (default: synthetic:train?size=20000, disjoint from synthetic:val)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--scenes", type=int, default=None, help="use the first N scenes (default: all)")
    p.add_argument("--val-dataset", default="synthetic:val", help="held-out scenes for the pointing accuracy "
                   "(default: synthetic:val; 'none' skips it)")
    p.add_argument("--val-limit", type=int, default=200, help="first N held-out scenes (default: 200)")
    p.add_argument("--obs-size", type=int, default=64,
                   help="observation size of the policy that will read the trunk (default: 64)")
    p.add_argument("--size", type=int, default=48, help="trunk input size (default: 48)")
    p.add_argument("--width", type=int, default=16, help="trunk width (default: 16)")
    p.add_argument("--steps", type=int, default=6000, help="optimisation steps (default: 6000)")
    p.add_argument("--batch-size", type=int, default=32, help="scenes per step and process (default: 32)")
    p.add_argument("--lr", type=float, default=5e-3, help="peak learning rate, one-cycle (default: 5e-3)")
    p.add_argument("--workers", type=int, default=2,
                   help="data-parallel processes, one torch thread each (default: 2); also build the scenes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from DIR/trunk_checkpoint.pt")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat train-trunk`` with the parsed ``args``; returns the exit code."""
    import json
    import logging
    from pathlib import Path

    import torch

    from agents.prm.model import PRMConfig
    from agents.prm.trunk import TrunkSettings, build_scenes, load_or_build_scenes, train_trunk
    from hlmat_env.datasets import make_dataset

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(args.out)
    n = len(make_dataset(args.dataset))
    n = n if args.scenes is None else min(n, args.scenes)
    scenes = load_or_build_scenes(out / "scenes.npz", args.dataset, range(n), obs_size=args.obs_size,
                                  size=args.size, workers=args.workers)
    val = None
    if args.val_dataset != "none":
        m = min(len(make_dataset(args.val_dataset)), args.val_limit)
        val = build_scenes(args.val_dataset, range(m), obs_size=args.obs_size, size=args.size, workers=args.workers)
    settings = TrunkSettings(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    path = train_trunk(scenes, out, config=PRMConfig(size=args.size, width=args.width), settings=settings,
                       workers=args.workers, val=val, resume=args.resume, progress=not args.no_progress)
    metrics = torch.load(path, map_location="cpu", weights_only=False)["metrics"]
    print(json.dumps({k: v for k, v in metrics.items() if k != "trunk_settings"}, indent=1))
    print(f"saved {path} (use it with hlmat train-ppo --trunk {path})")
    return 0
