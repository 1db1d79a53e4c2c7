"""Can a from-scratch tiny VLM read *where* something is? A probe of the MLLM section's failure.

Trains the same tiny LLaVA that the README's SFT uses (``hlmat tiny-vlm --arch llava --hidden 128 --layers 4
--image-tokens 64``) through ``agents.mllm.sft.SFTCollator`` (answer-token loss) on a toy task, and prints the
held-out answer loss with the real image next to the loss with a blank image. When the two are equal the model
ignores the image.

* ``--task colour``: the answer (one of two fixed clicks) follows the background colour, a global property.
* ``--task position``: the answer is the centre of one green 30x30 square on a plain grey background.
* ``--task caption``: three 30x30 squares (red, green, blue) on grey; the instruction names one colour and the
  answer is that square's centre: finding *which* object the text means, then where it is.

    python examples/tiny_vlm_probe.py --task position --steps 1000

``--save DIR`` writes the trained model and processor as a local checkpoint (a start for ``hlmat sft --model``);
``--init DIR`` starts from such a checkpoint instead of a fresh model (e.g. ``caption`` after ``position``).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from agents.mllm.policy import load_vlm
from agents.mllm.sft import SFTCollator, SFTSample
from agents.mllm.tiny_vlm import TinySize, build_tiny_vlm

HELD_OUT = 64
SQUARE_COLOURS = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}


def _apart(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    """``n`` square centres (x, y) inside 160x120 whose 30x30 squares do not overlap."""
    while True:
        pts = [(int(rng.integers(20, 140)), int(rng.integers(20, 100))) for _ in range(n)]
        if all(max(abs(a[0] - b[0]), abs(a[1] - b[1])) >= 32 for i, a in enumerate(pts) for b in pts[i + 1:]):
            return pts


def make_samples(task: str, n: int, folder: Path, rng: np.random.Generator) -> list[SFTSample]:
    samples = []
    for k in range(n):
        image = np.full((120, 160, 3), 90, np.uint8)
        if task == "colour":
            red = k % 2 == 1
            image[:] = (200, 40, 40) if red else (40, 40, 200)
            answer = "Positive point: (900, 900)" if red else "Positive point: (100, 100)"
        elif task == "position":
            x, y = int(rng.integers(20, 140)), int(rng.integers(20, 100))
            image[y - 15:y + 15, x - 15:x + 15] = (40, 200, 40)
            answer = f"Positive point: ({int(x / 160 * 1000)}, {int(y / 120 * 1000)})"
        else:
            centres = _apart(rng, 3)
            for (x, y), colour in zip(centres, SQUARE_COLOURS.values()):
                image[y - 15:y + 15, x - 15:x + 15] = colour
            pick = int(rng.integers(3))
            name = list(SQUARE_COLOURS)[pick]
            x, y = centres[pick]
            answer = f"Positive point: ({int(x / 160 * 1000)}, {int(y / 120 * 1000)})"
        description = f"the {name} square" if task == "caption" else "the square"
        path = folder / f"{k:05d}.png"
        Image.fromarray(image).save(path)
        samples.append(SFTSample(path, f"Please click. The object description is as follows: {description}", answer))
    return samples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=("colour", "position", "caption"), default="position")
    p.add_argument("--samples", type=int, default=4000, help="samples; the last 64 are held out")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--hidden", type=int, default=128, help="text hidden size of a fresh model (default: 128)")
    p.add_argument("--layers", type=int, default=4, help="text layers of a fresh model (default: 4)")
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint (default: a fresh model)")
    p.add_argument("--save", type=Path, default=None, help="write the trained model and processor to this folder")
    p.add_argument("--sft-schedule", action="store_true",
                   help="optimise as hlmat sft's Trainer does: 5%% linear warm-up, cosine decay, gradients clipped "
                        "at norm 1.0 (default: a constant learning rate, no clipping)")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        size = TinySize(hidden=args.hidden, layers=args.layers, image_tokens=64)  # default: the README's SFT model
        start = args.init if args.init is not None else build_tiny_vlm(tmp / "model", "llava", size=size)
        model, processor = load_vlm(start, dtype="float32")
        collator = SFTCollator(processor)
        (tmp / "images").mkdir()
        items = [collator.encode(s) for s in make_samples(args.task, args.samples, tmp / "images", rng)]
    train, held = items[:-HELD_OUT], collator(items[-HELD_OUT:])
    blank = dict(held, pixel_values=torch.zeros_like(held["pixel_values"]))
    opt = torch.optim.AdamW(model.parameters(), args.lr, weight_decay=0.0)
    schedule = None
    if args.sft_schedule:
        from transformers import get_cosine_schedule_with_warmup

        schedule = get_cosine_schedule_with_warmup(opt, int(0.05 * args.steps), args.steps)
    model.train()
    for step in range(1, args.steps + 1):
        batch = collator([train[i] for i in rng.integers(0, len(train), args.batch_size)])
        model(**batch).loss.backward()
        if schedule is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        if schedule is not None:
            schedule.step()
        if step % args.eval_every == 0:
            model.eval()
            with torch.no_grad():
                real, none = float(model(**held).loss), float(model(**blank).loss)
            model.train()
            print(f"step {step}: held-out answer loss {real:.3f}, with a blank image {none:.3f}", flush=True)
    if args.save is not None:
        model.save_pretrained(args.save)
        processor.save_pretrained(args.save)
        print(f"saved the model to {args.save}")


if __name__ == "__main__":
    main()
