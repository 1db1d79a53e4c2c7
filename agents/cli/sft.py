"""``hlmat sft``: supervised fine-tuning of a vision-language model on ``hlmat export`` data."""
from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hlmat sft`` and its flags."""
    p = subparsers.add_parser(
        "sft", help="fine-tune a vision-language model on exported demonstrations (trl or llamafactory)",
        description="Loss on the answer tokens only; nothing truncated; checkpoints in OUT/checkpoints (each "
                    "loads as mllm:OUT/checkpoints/checkpoint-N); the final model, processor and hlmat.json "
                    "(the codec) in OUT.")
    p.add_argument("--data", required=True, help="export folder (hlmat export --format trl|llamafactory), or several separated "
                                               "by commas (samples concatenated)")
    p.add_argument("--model", required=True, help="local model folder to start from")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--coords", default="segagent-qwen",
                   help="codec the export was written with (as given to hlmat export; default: segagent-qwen)")
    p.add_argument("--epochs", type=float, default=3.0, help="epochs (default: 3)")
    p.add_argument("--batch-size", type=int, default=4, help="batch size (default: 4)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate, cosine decay (default: 1e-3; "
                                                          "use ~1e-5 for real checkpoints)")
    p.add_argument("--save-steps", type=int, default=200, help="checkpoint every N steps (default: 200)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT/checkpoints")
    p.add_argument("--max-length", type=int, default=None, help="drop (never truncate) longer samples")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hlmat sft`` with the parsed ``args``; returns the exit code."""
    from agents.mllm.sft import sft

    out = sft(args.data, args.model, args.out, coords=args.coords, epochs=args.epochs, batch_size=args.batch_size,
              lr=args.lr, save_steps=args.save_steps, resume=args.resume, max_length=args.max_length,
              device=args.device, seed=args.seed)
    print(f"saved the fine-tuned model to {out}")
    return 0
