"""The grounded PPO baseline from nothing, timed stage by stage against a wall-clock budget (#5: 30 minutes).

Stages, each an ``hlmat`` command run as a user runs it (both cores busy throughout):

1. ``hlmat train-trunk``: build the training scenes and pretrain the grounding trunk on them (target-map loss,
   data-parallel over 2 processes);
2. ``hlmat train-ppo --trunk``: record oracle demonstrations (2 workers), compute the frozen trunk's maps of
   every state once (4 flips, as the policy acts), behaviour-clone the click head (these two with 2 torch
   threads: ``--bc-threads``), then ``--ppo-steps`` of PPO (0: the BC policy is the result).

Measured here (thirteenth session, idle machine, defaults): trunk 17.6 min (83.0% / 87.0% pointing with 1 / 4
flips), policy 9.2 min (2.8 of them PPO), total 26.7 min; 74.6 mIoU@5 on synthetic:val (README).

Writes ``OUT/budget.json`` (seconds per stage and in total, the commands) and ``OUT/training.png`` (the
three stages' curves) and prints a table. A stage whose
output exists is not run again (its recorded time is kept), so a killed run continues where it stopped; the
benchmark is not part of the budget:
    hlmat benchmark --agent ppo:OUT/policy --dataset synthetic:val --segmenter default --out OUT/bench
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def stages(a: argparse.Namespace) -> list[tuple[str, Path, list[str]]]:
    out = Path(a.out)
    trunk = ["train-trunk", "--dataset", a.dataset, "--out", str(out / "trunk"), "--steps", str(a.trunk_steps),
             "--batch-size", str(a.trunk_batch), "--lr", str(a.trunk_lr), "--size", str(a.trunk_size),
             "--workers", str(a.workers), "--val-limit", str(a.val_limit), "--resume"]
    policy = ["train-ppo", "--dataset", a.dataset, "--out", str(out / "policy"), "--trunk",
              str(out / "trunk" / "prm.pt"), "--trunk-flips", "4", "--bc-demos", str(out / "demos"),
              "--bc-episodes", str(a.bc_episodes), "--bc-clicks", "4", "--bc-first-clicks", str(a.bc_first_clicks),
              "--bc-epochs", str(a.bc_epochs), "--bc-lr", str(a.bc_lr), "--bc-threads", str(a.workers),
              "--timesteps", str(a.ppo_steps),
              "--n-envs", str(a.workers), "--learning-rate", "3e-5", "--place", "map", "--positive-threshold", "0.7"]
    return [("trunk", out / "trunk" / "prm.pt", trunk), ("policy", out / "policy" / "model.zip", policy)]


def plot_stages(out: Path) -> Path:
    """``OUT/training.png``: the trunk's map loss by step, behaviour cloning's loss and accuracy by epoch, and
    PPO's mean episode return by env step (the panels whose logs exist)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agents.ppo.curve import read_progress

    trunk, bc = out / "trunk" / "trunk_log.json", out / "policy" / "bc_log.json"
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=100)
    if trunk.exists():
        rows = json.loads(trunk.read_text())
        axes[0].plot([r["step"] for r in rows], [r["loss"] for r in rows])
    axes[0].set(title="1. trunk (target-map loss)", xlabel="step", ylabel="BCE + 1 - fuzzy IoU")
    if bc.exists():
        rows = json.loads(bc.read_text())
        axes[1].plot([r["epoch"] for r in rows], [r["loss"] for r in rows], marker="o")
        twin = axes[1].twinx()
        twin.plot([r["epoch"] for r in rows], [r["accuracy"] for r in rows], marker="s", color="C1")
        twin.set_ylabel("accuracy (arg-max accepted)", color="C1")
    axes[1].set(title="2. behaviour cloning", xlabel="epoch", ylabel="loss")
    rows = read_progress(out / "policy")
    if rows:
        axes[2].plot([r[0] for r in rows], [r[1] for r in rows], marker=".")
    axes[2].set(title="3. PPO (stochastic policy)", xlabel="environment steps", ylabel="mean episode return")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "training.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/ppo_budget")
    p.add_argument("--dataset", default="synthetic:train?size=20000")
    p.add_argument("--trunk-steps", type=int, default=7500)
    p.add_argument("--trunk-batch", type=int, default=16, help="per process")
    p.add_argument("--trunk-lr", type=float, default=5e-3)
    p.add_argument("--trunk-size", type=int, default=48)
    p.add_argument("--val-limit", type=int, default=200, help="held-out scenes for the trunk's pointing accuracy")
    p.add_argument("--bc-episodes", type=int, default=2000)
    p.add_argument("--bc-first-clicks", type=int, default=4000)
    p.add_argument("--bc-epochs", type=int, default=4)
    p.add_argument("--bc-lr", type=float, default=3e-3)
    p.add_argument("--ppo-steps", type=int, default=2048)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--budget-min", type=float, default=30.0)
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    record = out / "budget.json"
    done = json.loads(record.read_text()) if record.exists() else {"stages": {}}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for name, product, args in stages(a):
        if product.exists() and name in done["stages"]:
            print(f"{name}: done earlier ({done['stages'][name]['seconds']:.0f} s), not run again")
            continue
        cmd = [sys.executable, "-m", "agents.cli", *args]
        print("$ hlmat " + " ".join(args), flush=True)
        start = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        done["stages"][name] = {"seconds": time.perf_counter() - start, "command": "hlmat " + " ".join(args)}
        record.write_text(json.dumps(done, indent=1) + "\n")
    total = sum(s["seconds"] for s in done["stages"].values())
    done["total_seconds"], done["budget_seconds"] = total, 60 * a.budget_min
    record.write_text(json.dumps(done, indent=1) + "\n")
    print("\n| stage | minutes |\n|---|---|")
    for name, s in done["stages"].items():
        print(f"| {name} | {s['seconds'] / 60:.1f} |")
    verdict = "within" if total <= 60 * a.budget_min else "OVER"
    print(f"| total | {total / 60:.1f} ({verdict} the {a.budget_min:g}-minute budget) |")
    print(f"\nwrote {plot_stages(out)}")
    print(f"\nscore it: hlmat benchmark --agent ppo:{out / 'policy'} --dataset synthetic:val --segmenter default "
          f"--out {out / 'bench'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
