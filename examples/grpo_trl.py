"""GRPO on HLMATEnv in a plain TRL script: the adapter ``agents.mllm.grpo.HLMATGRPOEnv`` gives TRL's
``GRPOTrainer`` its rows, its ``rollout_func`` and its reward; everything else is TRL's own (``GRPOConfig``:
group size, KL weight ``beta``, learning rate, logging, checkpoints).

    python examples/grpo_trl.py                                  # a tiny random Qwen2-VL, 2 steps
    python examples/grpo_trl.py --model runs/sft --steps 100     # a model made by hlmat sft

Each row is one state of an episode (the image with the current mask as SegAgent's green overlay); the group's
answers are played to the episode's end in the env and rewarded with its final IoU (minus ``invalid_penalty``
for unparseable text). At the end the script replays the last step's episodes through a fresh env and prints
their IoU beside the rewards the trainer received. ``hlmat grpo`` is the same wiring with checkpoints, resume
and a settings record.
"""
from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is marked experimental in TRL


def main() -> None:
    """Parse the flags, train with TRL's GRPOTrainer on HLMATEnv, print the rewards and their replays."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: a fresh tiny Qwen2-VL)")
    ap.add_argument("--dataset", default="synthetic:train", help="training scenes (default: synthetic:train)")
    ap.add_argument("--steps", type=int, default=2, help="GRPO steps (default: 2)")
    ap.add_argument("--group-size", type=int, default=4, help="answers per state (default: 4)")
    ap.add_argument("--max-clicks", type=int, default=3, help="clicks per episode (default: 3)")
    ap.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    args = ap.parse_args()

    import torch
    from trl import GRPOConfig, GRPOTrainer

    from agents.mllm.grpo import HLMATGRPOEnv, replay
    from agents.mllm.policy import load_vlm, saved_codec
    from agents.mllm.tiny_vlm import build_tiny_vlm
    from hlmat_env.env import HLMATEnv

    torch.set_num_threads(1)
    out = args.out or tempfile.mkdtemp(prefix="grpo_trl_")
    path = args.model or build_tiny_vlm(os.path.join(out, "start"), "qwen2-vl")
    model, processor = load_vlm(path, dtype="float32")
    model.train()
    hl = HLMATGRPOEnv(model, processor, args.dataset, codec=saved_codec(path) or "qwen2",
                      max_clicks=args.max_clicks, invalid_penalty=1.0)
    config = GRPOConfig(output_dir=out, num_generations=args.group_size, per_device_train_batch_size=args.group_size,
                        max_steps=args.steps, learning_rate=1e-4, beta=0.04, max_completion_length=32,
                        use_cpu=not torch.cuda.is_available(), bf16=False, report_to=[], logging_steps=1,
                        save_strategy="no")
    trainer = GRPOTrainer(model=model, processing_class=processor, args=config, train_dataset=hl.dataset(),
                          reward_funcs=hl.reward, rollout_func=hl.rollout_func)
    trainer.train()

    env = HLMATEnv(dataset=args.dataset, max_clicks=args.max_clicks)
    print("| answer | valid | clicks | final IoU | reward | replayed final IoU |")
    print("|---|---|---|---|---|---|")
    for ep in hl.last_episodes:
        print(f"| {ep.answer[:40]!r} | {ep.valid} | {len(ep.actions)} | {ep.final_iou:.4f} | {ep.reward:.4f} | "
              f"{replay(ep, env):.4f} |")
    print(f"parse rate {hl.totals['valid'] / hl.totals['answers']:.3f} over {hl.totals['answers']} answers")


if __name__ == "__main__":
    main()
