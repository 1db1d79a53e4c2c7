"""Train PPO on HLMATEnv-v0 with RLlib (new API stack) and several env runners, then score the policy.

    pip install -e ".[rllib]"
    OMP_NUM_THREADS=1 python examples/rllib_ppo.py --env-runners 2 --iterations 20 --out runs/rllib_ppo

The env runners (Ray actors, one env and one CPU each; on a Ray cluster they spread over machines) sample
episodes with agents.rllib.ClickCNNModule; the learner (here in the driver) runs PPO on their batches and
sends the new weights back. At the end the trained module plays --eval-episodes episodes of --eval-dataset
greedily, next to uniformly random actions on the same episodes. To join an existing cluster, start this
script with RAY_ADDRESS set (or call ray.init(address=...) before main()). Easier rungs of the variant ladder:
--dataset "synthetic:train?objects=1" --eval-dataset "synthetic:val?objects=1" [--start box].
"""
from __future__ import annotations

import argparse
import time
from typing import Any


def _learner_weights(algo: Any) -> dict[str, Any]:
    """The learner's weights (a copy) of the default module, as float64 numpy arrays."""
    import numpy as np

    weights = algo.learner_group.get_weights()["default_policy"]
    return {k: np.array(v, dtype=np.float64) for k, v in weights.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, train, print a summary; returns the numbers printed (for tests)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="synthetic:train",
                   help="training dataset spec (default: %(default)s)")
    p.add_argument("--eval-dataset", default="synthetic:val",
                   help="scoring dataset spec (default: %(default)s)")
    p.add_argument("--env-runners", type=int, default=2, help="remote env runners (default: %(default)s)")
    p.add_argument("--iterations", type=int, default=10,
                   help="PPO training iterations (default: %(default)s)")
    p.add_argument("--batch", type=int, default=1024, help="env steps per iteration (default: %(default)s)")
    p.add_argument("--minibatch", type=int, default=128, help="SGD minibatch (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=4, help="SGD passes per batch (default: %(default)s)")
    p.add_argument("--lr", type=float, default=3e-4, help="learning rate (default: %(default)s)")
    p.add_argument("--size", type=int, default=64, help="observation side (default: %(default)s)")
    p.add_argument("--grid", type=int, default=16, help="click grid side (default: %(default)s)")
    p.add_argument("--caption", default="multihot", choices=("multihot", "hashed", "none"),
                   help="caption code, or none to drop it (default: %(default)s)")
    p.add_argument("--max-clicks", type=int, default=5, help="clicks per episode (default: %(default)s)")
    p.add_argument("--start", default="empty", choices=("empty", "box", "degraded"),
                   help="the env's start state (default: %(default)s)")
    p.add_argument("--eval-episodes", type=int, default=50, help="scored episodes (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="save an RLlib checkpoint of the algorithm there")
    args = p.parse_args(argv)

    import numpy as np
    import ray
    import torch

    from agents.rllib import module_episodes, ppo_config

    torch.set_num_threads(1)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=max(2, args.env_runners), include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
    config = ppo_config(args.dataset, args.env_runners, size=args.size, grid=args.grid, caption=args.caption,
                        max_clicks=args.max_clicks, env_kwargs={"start": args.start},
                        train_batch_size=args.batch,
                        minibatch_size=args.minibatch,
                        num_epochs=args.epochs, lr=args.lr, seed=args.seed)
    algo = config.build_algo()
    try:
        before = _learner_weights(algo)
        history = []
        t0 = time.perf_counter()
        for it in range(args.iterations):
            res = algo.train()
            runners, learner = res["env_runners"], res["learners"]["default_policy"]
            row = {"iteration": it + 1, "env_steps": int(res["num_env_steps_sampled_lifetime"]),
                   "return_mean": runners.get("episode_return_mean"),
                   "len_mean": runners.get("episode_len_mean"),
                   "policy_loss": float(learner["policy_loss"]), "vf_loss": float(learner["vf_loss"]),
                   "entropy": float(learner["entropy"]), "wall_s": time.perf_counter() - t0}
            history.append(row)
            print(f"iter {row['iteration']:3d}  env steps {row['env_steps']:6d}  "
                  f"return {row['return_mean']:+.3f}  len {row['len_mean']:.2f}  "
                  f"policy loss {row['policy_loss']:+.4f}  vf loss {row['vf_loss']:.2e}  "
                  f"entropy {row['entropy']:.3f}  {row['wall_s']:.0f}s", flush=True)
        after = _learner_weights(algo)
        change = float(np.sqrt(sum(((after[k] - before[k]) ** 2).sum() for k in before)))
        # the weights every remote env runner samples with, after the last broadcast
        runner_sums = algo.env_runner_group.foreach_env_runner(
            lambda r: float(sum(v.double().sum() for v in r.module.state_dict().values())),
            local_env_runner=False)
        learner_sum = float(sum(v.sum() for v in after.values()))
        tol = 1e-6 * (1 + abs(learner_sum))
        synced = bool(runner_sums) and all(abs(s - learner_sum) < tol for s in runner_sums)
        print(f"weights changed by L2 {change:.4f}; {len(runner_sums)} env runners hold the learner's "
              f"weights: {synced}")
        result: dict[str, Any] = {"history": history, "weight_change": change, "runners_synced": synced,
                                  "num_env_runners": len(runner_sums)}
        if args.eval_episodes > 0:
            cfg = {**config.env_config, "dataset": args.eval_dataset}
            module = algo.get_module()  # the driver's copy, synced with the learner after every iteration
            trained = module_episodes(module, cfg, args.eval_episodes, seed=args.seed)
            rand = module_episodes(None, cfg, args.eval_episodes, seed=args.seed)
            result.update(eval_iou=float(np.mean(trained)), random_iou=float(np.mean(rand)))
            print(f"{args.eval_dataset}, {args.eval_episodes} episodes, {args.max_clicks} clicks: final mIoU "
                  f"trained module (greedy) {100 * result['eval_iou']:.1f}, random actions "
                  f"{100 * result['random_iou']:.1f}")
        if args.out:
            path = algo.save_to_path(args.out)
            print(f"checkpoint: {path}")
            result["checkpoint"] = str(path)
        return result
    finally:
        algo.stop()
        if started:
            ray.shutdown()


if __name__ == "__main__":
    main()
