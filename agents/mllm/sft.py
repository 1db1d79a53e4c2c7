"""Supervised fine-tuning of a vision-language model on exported demonstrations (``hlmat export``).

Reads either export format: TRL (``train.jsonl``, conversational prompt/completion + ``images``) or LLaMA-Factory
(``dataset_info.json`` + its ShareGPT JSON, ``<image>`` in the user turn). Each sample becomes the model's own chat
text; the loss covers the answer tokens only (the end-of-turn tokens included): labels are -100 over the whole
prompt, whose length is counted *after* the processor expands the image placeholder into image tokens. Nothing
is truncated (a too-long sample is dropped and counted, so image tokens are never cut). Training uses
transformers' ``Trainer`` (cosine schedule after a 5% warm-up; each sample is encoded once and kept). Every
``save_steps`` it writes ``out/checkpoints/checkpoint-N``, which loads as an agent as it is (processor and
``hlmat.json`` beside the weights); ``resume=True`` continues from the last one. The final model, processor and
``hlmat.json`` (the codec) are saved in ``out``.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.mllm.policy import complete_model_folder, load_vlm, user_turn
from agents.mllm.resume import loadable_checkpoints, resume_weights
from hlmat_env.errors import DatasetError

log = logging.getLogger(__name__)


IMAGE_KEYS = ("pixel_values", "image_grid_thw", "image_sizes")
"""Processor outputs with one row per image (concatenated across a batch, never padded)."""


@dataclass(frozen=True)
class SFTSample:
    """One click step: the overlay image file, the user's instruction, the answer text."""

    image: Path
    instruction: str
    answer: str


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text")


def load_samples(data: str | Path) -> list[SFTSample]:
    """Samples of a TRL or LLaMA-Factory export folder (image paths resolved against the folder), or of several
    folders given as one string separated by commas (concatenated in order).

    Raises:
        DatasetError: no recognised export in ``data``, or a record without image/user/assistant turn.
    """
    if isinstance(data, str) and "," in data and not Path(data).exists():
        return [s for folder in data.split(",") if folder for s in load_samples(folder)]
    data = Path(data)
    records: list[tuple[Any, str, str]] = []  # (image path, user text, answer)
    if (data / "train.jsonl").is_file():
        with open(data / "train.jsonl", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    r = json.loads(line)
                    try:
                        records.append((r["images"][0], _text_of(r["prompt"][-1]["content"]),
                                        _text_of(r["completion"][-1]["content"])))
                    except (KeyError, IndexError, TypeError) as e:
                        raise DatasetError(f"{data / 'train.jsonl'} line {n}: not a TRL vision record ({e})") from e
    elif (data / "dataset_info.json").is_file():
        info = json.loads((data / "dataset_info.json").read_text(encoding="utf-8"))
        for name, entry in info.items():
            path = data / entry["file_name"]
            for n, r in enumerate(json.loads(path.read_text(encoding="utf-8"))):
                try:
                    user = next(m["content"] for m in r["messages"] if m["role"] == "user")
                    answer = next(m["content"] for m in r["messages"] if m["role"] == "assistant")
                    records.append((r["images"][0], user.replace("<image>", "", 1), answer))
                except (KeyError, IndexError, StopIteration) as e:
                    raise DatasetError(f"{path} record {n}: not a ShareGPT vision record ({e!r})") from e
    else:
        raise DatasetError(f"{data} holds no export: expected train.jsonl (hlmat export --format trl) or "
                           "dataset_info.json (--format llamafactory)")
    if not records:
        raise DatasetError(f"{data}: the export holds no samples")
    samples = []
    for image, text, answer in records:
        p = Path(image) if Path(image).is_absolute() else data / image
        if not p.is_file():
            raise DatasetError(f"{data}: image {p} of a sample is missing")
        samples.append(SFTSample(p, text.strip(), answer.strip()))
    return samples


class SFTCollator:
    """Builds a padded training batch (left padding) with labels on the answer tokens only.

    Args:
        processor: the model's multimodal processor (chat template, image processor, tokenizer).
    """

    def __init__(self, processor: Any):
        self.processor = processor

    def texts(self, s: SFTSample) -> tuple[str, str]:
        """``(prompt text, prompt + answer text)`` in the model's chat template."""
        user = user_turn(s.instruction)
        answer = {"role": "assistant", "content": [{"type": "text", "text": s.answer}]}
        prompt = self.processor.apply_chat_template([user], add_generation_prompt=True, tokenize=False)
        full = self.processor.apply_chat_template([user, answer], tokenize=False)
        if not full.startswith(prompt):
            # LLaVA-style templates write "ASSISTANT:" then " answer": keep the template's text after the prompt
            raise ValueError(f"chat template: the conversation does not start with the generation prompt:\n"
                             f"{prompt!r}\nvs\n{full!r}")
        return prompt, full

    def prompt_length(self, s: SFTSample, image: Any) -> int:
        """Prompt tokens after image-token expansion."""
        prompt, _ = self.texts(s)
        return int(self.processor(text=[prompt], images=[image], return_tensors="pt")["input_ids"].shape[1])

    def encode(self, s: SFTSample) -> dict[str, Any]:
        """One sample's tensors: 1-D ``input_ids``/``attention_mask``/``labels`` (-100 over the prompt) and the
        processor's image tensors (``pixel_values``... with a leading image dimension)."""
        from PIL import Image

        image = Image.open(s.image).convert("RGB")
        enc = self.processor(text=[self.texts(s)[1]], images=[image], return_tensors="pt")
        length = enc["input_ids"].shape[1]
        # per-token tensors (input_ids, attention_mask, mm_token_type_ids...) lose the batch dimension
        item = {k: v[0] if v.ndim == 2 and v.shape == (1, length) and k not in IMAGE_KEYS else v
                for k, v in enc.items()}
        labels = item["input_ids"].clone()
        labels[: self.prompt_length(s, image)] = -100
        item["labels"] = labels
        return item

    def __call__(self, samples: list[SFTSample | dict[str, Any]]) -> dict[str, Any]:
        """A left-padded batch from samples or their :meth:`encode` results; image tensors are concatenated."""
        import torch

        items = [x if isinstance(x, dict) else self.encode(x) for x in samples]
        n = max(len(x["input_ids"]) for x in items)
        pad = self.processor.tokenizer.pad_token_id
        batch: dict[str, Any] = {}
        for key in items[0]:
            if items[0][key].ndim == 1:  # per token: left padding
                fill = {"input_ids": pad, "labels": -100}.get(key, 0)
                batch[key] = torch.stack([torch.cat([torch.full((n - len(x[key]),), fill, dtype=x[key].dtype),
                                                     x[key]]) for x in items])
            else:
                batch[key] = torch.cat([x[key] for x in items])
        return batch


def sft(data: str | Path, model_path: str | Path, out: str | Path, *, coords: str = "segagent-qwen",
        epochs: float = 3.0, batch_size: int = 4, lr: float = 1e-3, save_steps: int = 200, resume: bool = False,
        max_length: int | None = None, device: str = "cpu", seed: int = 0, logging_steps: int = 20) -> Path:
    """Fine-tune ``model_path`` on the export in ``data`` and save the result to ``out``.

    Args:
        data: an export folder, or several separated by commas (their samples are concatenated).
        coords: the codec the answers were written with; stored in ``out/hlmat.json`` for ``MLLMAgent``.
        max_length: drop (never truncate) samples longer than this many tokens; None keeps all.
        resume: continue from the last checkpoint in ``out/checkpoints`` (a fresh start when there is none).
    Returns:
        ``out``, a folder that loads like the original checkpoint.
    """
    from transformers import Trainer, TrainingArguments

    out = Path(out)
    samples = load_samples(data)
    model, processor = load_vlm(model_path, device=device, dtype="float32")
    model.train()
    collator = SFTCollator(processor)
    if max_length is not None:
        kept = [s for s in samples if len(collator.encode(s)["input_ids"]) <= max_length]
        log.warning("dropped %d of %d samples longer than %d tokens", len(samples) - len(kept), len(samples),
                    max_length)
        samples = kept
    ckpt_dir = out / "checkpoints"
    total_steps = math.ceil(len(samples) / batch_size) * epochs
    args = TrainingArguments(
        output_dir=str(ckpt_dir), per_device_train_batch_size=batch_size, num_train_epochs=epochs,
        learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=int(0.05 * total_steps), weight_decay=0.0,
        save_strategy="steps", save_steps=save_steps, save_total_limit=2, logging_steps=logging_steps,
        report_to=[], remove_unused_columns=False, dataloader_num_workers=0, seed=seed,
        use_cpu=device == "cpu", disable_tqdm=True,
    )
    settings = {"coords": coords, "base_model": str(model_path), "samples": len(samples)}
    trainer = Trainer(model=model, args=args, train_dataset=_EncodedDataset(samples, collator), data_collator=collator,
                      callbacks=[loadable_checkpoints(processor, settings)])
    last = resume_weights(model, ckpt_dir) if resume else None  # Trainer's own resume restores none of a VLM's
    trainer.train(resume_from_checkpoint=str(last) if last else None)  # weights; it restores the rest
    trainer.save_model(str(out))
    complete_model_folder(out, processor, settings)
    return out



class _EncodedDataset:
    """A map-style dataset (what ``Trainer`` needs) that encodes each sample once and keeps the tensors."""

    def __init__(self, samples: list[SFTSample], collator: SFTCollator):
        self.samples, self.collator = samples, collator
        self.cache: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i not in self.cache:
            self.cache[i] = self.collator.encode(self.samples[i])
        return self.cache[i]
