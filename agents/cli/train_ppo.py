"""``hlmat train-ppo``: train the PPO click policy (optional behaviour-cloning warm start), save ``DIR/model.zip``."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat train-ppo`` and its flags."""
    p = subparsers.add_parser(
        "train-ppo", help="train the PPO baseline (BC warm start optional); ppo:DIR loads the result",
        description="Train a PPO click policy on the SB3-ready wrapped env. Writes DIR/model.zip (+ .json), "
                    "DIR/bc_model.zip when --bc-demos is given, DIR/checkpoints/, TensorBoard logs in DIR, "
                    "DIR/training_curve.png.")
    p.add_argument("--env-id", default="HLMATEnv-v0",
                   help="registered env to train on, e.g. a rung of the variant ladder (hlmat_env.variants: "
                        "HLMATEnv-OneObjectBox-v0, HLMATEnv-OneObject-v0, HLMATEnv-Box-v0, HLMATEnv-Refine-v0; "
                        "default: HLMATEnv-v0)")
    p.add_argument("--dataset", default=None,
                   help="training dataset spec (default: the env id's registered dataset; for HLMATEnv-v0 "
                        "synthetic:train?size=20000, disjoint from synthetic:val)")
    p.add_argument("--segmenter", default="default", help="segmenter name (default: default)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--timesteps", type=int, default=20_000, help="PPO environment steps (0: BC only)")
    p.add_argument("--bc-demos", default=None, metavar="DIR",
                   help="oracle demonstrations folder (DIR/demos.npz; generated there when missing)")
    p.add_argument("--bc-episodes", type=int, default=4000,
                   help="episodes to record when generating demos (default: 4000, one new scene each when the "
                        "dataset is large enough, e.g. synthetic:train?size=20000)")
    p.add_argument("--bc-clicks", type=int, default=4,
                   help="clicks per demonstration episode (default: 4; 0: up to --max-clicks)")
    p.add_argument("--bc-first-clicks", type=int, default=0,
                   help="further demonstration episodes of which only the first (empty-mask) state is recorded")
    p.add_argument("--init-from", default=None, metavar="MODEL",
                   help="start from this model's policy weights (staged training; same settings)")
    p.add_argument("--bc-epochs", type=int, default=8, help="behaviour-cloning epochs (default: 8)")
    p.add_argument("--bc-lr", type=float, default=3e-3, help="behaviour-cloning peak learning rate (default: 3e-3)")
    p.add_argument("--bc-threads", type=int, default=1,
                   help="torch threads for behaviour cloning, when the env workers are idle (default: 1)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in DIR")
    p.add_argument("--n-envs", type=int, default=2, help="parallel env workers (default: 2)")
    p.add_argument("--grid", type=int, default=32, help="click grid size (default: 32)")
    p.add_argument("--no-finish", action="store_true", help="no finish action (the policy clicks to the budget)")
    p.add_argument("--size", type=int, default=64, help="observation size (default: 64)")
    p.add_argument("--max-clicks", type=int, default=5, help="clicks per training episode (default: 5)")
    p.add_argument("--learning-rate", type=float, default=1e-4, help="PPO learning rate (default: 1e-4)")
    p.add_argument("--n-steps", type=int, default=128, help="rollout steps per env and update (default: 128)")
    p.add_argument("--n-epochs", type=int, default=4, help="PPO epochs per update (default: 4)")
    p.add_argument("--clip-range", type=float, default=0.1, help="PPO clip range (default: 0.1)")
    p.add_argument("--ent-coef", type=float, default=0.0, help="PPO entropy bonus (default: 0)")
    p.add_argument("--width", type=int, default=32, help="policy convolution channels (default: 32)")
    p.add_argument("--net", choices=("clicknet", "local"), default="clicknet",
                   help="plain policy network: clicknet (caption-conditioned U-net with a target-map head, for "
                        "behaviour cloning) or local (translation-equivariant: the same local detector at every "
                        "cell, for PPO from scratch; agents/ppo/local.py) (default: clicknet)")
    p.add_argument("--batch-size", type=int, default=64, help="PPO minibatch size (default: 64)")
    p.add_argument("--trunk", default=None, metavar="PRM",
                   help="ground the policy on this PRM checkpoint's trunk (hlmat train-prm; agents/ppo/grounded.py); "
                        "the caption is then the hashed code")
    p.add_argument("--trunk-flips", type=int, default=None, metavar="K",
                   help="the saved policy averages the trunk's map over K flips (1-4) when it acts, and so does behaviour "
                        "cloning with a frozen trunk (its maps are computed once); PPO updates: 1")
    p.add_argument("--place", choices=("centre", "map"), default="centre",
                   help="where the saved policy puts a click inside its grid cell: the centre, or (trunk only) the "
                        "pixel on its side of the mask where the target map agrees most (PPOAgent; default: centre)")
    p.add_argument("--positive-threshold", type=float, default=0.0, metavar="T",
                   help="with --place map: refinement clicks may be positive only in cells where the target map "
                        "outside the mask reaches T (the shipped ppo:grounded: 0.7; default: 0 = off)")
    p.add_argument("--train-trunk", action="store_true", help="fine-tune the trunk too (default: frozen)")
    p.add_argument("--critic", choices=("shared", "separate"), default="shared",
                   help="grounded policies: PPO's value on the shared trunk (one network, three heads) or on its own "
                        "copy of the trunk (default: shared)")
    p.add_argument("--prm-coef", type=float, default=0.0, metavar="C",
                   help="grounded policies: train the PRM head (the trunk's IoU estimate) by regression on the "
                        "states' IoU (from the env's rewards) after each PPO update, with weight C (default: 0 = off)")
    p.add_argument("--prm-epochs", type=int, default=1, help="passes of that regression per update (default: 1)")
    p.add_argument("--target-kl", type=float, default=0.02,
                   help="PPO stops an update's epochs early past this KL (default: 0.02)")
    p.add_argument("--gamma", type=float, default=0.9, help="discount (default: 0.9)")
    p.add_argument("--checkpoint-every", type=int, default=2048, metavar="STEPS",
                   help="save checkpoints/ppo_<steps>_steps.zip every STEPS env steps (default: 2048)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat train-ppo`` with the parsed ``args``; returns the exit code."""
    import logging

    from agents.ppo.train import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    dataset = args.dataset
    if dataset is None and args.env_id == "HLMATEnv-v0":
        dataset = "synthetic:train?size=20000"
    path = train(dataset, args.segmenter, args.out, timesteps=args.timesteps, bc_demos=args.bc_demos,
                 bc_episodes=args.bc_episodes,
                 bc_clicks=args.bc_clicks or None, bc_first_clicks=args.bc_first_clicks,
                 init_from=args.init_from, bc_epochs=args.bc_epochs, bc_lr=args.bc_lr,
                 bc_threads=args.bc_threads, resume=args.resume,
                 progress=not args.no_progress, n_envs=args.n_envs, grid=args.grid, size=args.size,
                 max_clicks=args.max_clicks, finish=not args.no_finish, learning_rate=args.learning_rate,
                 n_steps=args.n_steps, width=args.width, net=args.net, batch_size=args.batch_size, seed=args.seed, env_id=args.env_id,
                 n_epochs=args.n_epochs, clip_range=args.clip_range, ent_coef=args.ent_coef,
                 trunk=args.trunk, train_trunk=args.train_trunk,
                 trunk_flips=args.trunk_flips, place=args.place, positive_threshold=args.positive_threshold,
                 critic=args.critic, prm_coef=args.prm_coef, prm_epochs=args.prm_epochs, target_kl=args.target_kl,
                 gamma=args.gamma, checkpoint_every=args.checkpoint_every)
    print(f"saved {path} (load it with --agent ppo:{args.out})")
    return 0
