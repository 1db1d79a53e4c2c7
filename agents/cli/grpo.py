"""``hlmat grpo``: GRPO on HLMATEnv episodes (TRL's GRPOTrainer) for a model that ``mllm:`` accepts."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat grpo`` and its flags."""
    p = subparsers.add_parser(
        "grpo", help="reinforce an MLLM click policy with GRPO, the env's final IoU as the only reward (TRL)",
        description="Each step: STATES states of the policy's own episodes on DATASET, GROUP_SIZE answers sampled "
                    "for each; every answer is applied in the env and its episode played to MAX_CLICKS clicks by the "
                    "current policy (greedy). Reward = the episode's final IoU, minus INVALID_PENALTY when an answer "
                    "was unparseable text (that ends the episode). KL to the start model weighted by BETA. "
                    "Checkpoints in OUT/checkpoints (each loads as mllm:OUT/checkpoints/checkpoint-N), TensorBoard "
                    "logs in OUT/runs, settings in OUT/grpo_settings.json; the final model in OUT (mllm:OUT).")
    p.add_argument("--model", required=True, help="model folder that mllm: accepts (e.g. the output of hlmat sft)")
    p.add_argument("--dataset", default="synthetic:train", help="dataset spec of the training scenes "
                                                                "(default: synthetic:train)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--coords", default=None, help="codec of the answers (default: the model folder's hlmat.json)")
    p.add_argument("--group-size", type=int, default=8, help="answers sampled per state (default: 8)")
    p.add_argument("--states", type=int, default=2, help="states per step (default: 2)")
    p.add_argument("--max-clicks", type=int, default=5, help="clicks per episode (default: 5)")
    p.add_argument("--invalid-penalty", type=float, default=1.0,
                   help="subtracted from the reward of an episode ended by unparseable text (default: 1.0)")
    p.add_argument("--beta", type=float, default=0.04, help="weight of the KL to the start model (default: 0.04)")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate, constant after a 5%% warm-up "
                                                          "(default: 1e-4; ~1e-6 for real checkpoints)")
    p.add_argument("--max-steps", type=int, default=200, help="optimisation steps (default: 200)")
    p.add_argument("--save-steps", type=int, default=50, help="checkpoint every N steps (default: 50)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="tokens per answer (default: 32)")
    p.add_argument("--segmenter", default="default", help="segmenter name (default: default)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT/checkpoints")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... or auto (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat grpo`` with the parsed ``args``; returns the exit code."""
    from agents.mllm.grpo_train import grpo

    out = grpo(args.model, args.dataset, args.out, coords=args.coords, group_size=args.group_size,
               states=args.states, max_clicks=args.max_clicks, invalid_penalty=args.invalid_penalty, beta=args.beta,
               lr=args.lr, max_steps=args.max_steps, save_steps=args.save_steps, temperature=args.temperature,
               max_new_tokens=args.max_new_tokens, segmenter=args.segmenter, resume=args.resume, device=args.device,
               seed=args.seed, progress=not args.no_progress)
    print(f"saved the GRPO-trained model to {out} (load it as mllm:{out})")
    return 0
