"""``grpo``: train an ``mllm:`` model with TRL's ``GRPOTrainer`` on HLMATEnv episodes (``hlmat grpo``).

The wiring around :class:`agents.mllm.grpo.HLMATGRPOEnv`: load the model folder (``load_vlm``, float32), build the
adapter and a ``GRPOConfig`` (``states`` rows x ``group_size`` answers per step, ``beta`` = weight of the KL to
the start model), train with TRL, and save. Every ``save_steps`` it writes ``out/checkpoints/checkpoint-N``,
which loads as an agent as it is (processor and ``hlmat.json`` beside the weights); ``resume=True`` continues
from the last one, refusing when the recorded settings differ. TensorBoard event files go to ``out/runs``; the
trainer's progress bar shows steps and seconds per step, the log lines add episodes per second, the parse rate
and the mean final IoU. ``out/grpo_settings.json`` records the settings.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from agents.mllm.policy import DEFAULT_CODEC, complete_model_folder, load_vlm, saved_codec
from agents.mllm.resume import loadable_checkpoints, resume_weights
from agents.tools.settings_record import check_record, write_record

log = logging.getLogger(__name__)

SETTINGS_RECORD = "grpo_settings.json"
"""The settings record in ``out`` (checked on ``resume``)."""

RESUME_KEYS = ("model", "dataset", "coords", "group_size", "states", "max_clicks", "invalid_penalty", "beta",
               "lr", "temperature", "seed", "segmenter")
"""Settings that must match for ``resume`` to continue a run (``max_steps`` may grow: train longer)."""


def grpo(model_path: str | Path, dataset: str, out: str | Path, *, coords: str | None = None, group_size: int = 8,
         states: int = 2, max_clicks: int = 5, invalid_penalty: float = 1.0, beta: float = 0.04, lr: float = 1e-4,
         max_steps: int = 200, save_steps: int = 50, temperature: float = 1.0, max_new_tokens: int = 32,
         logging_steps: int = 5, resume: bool = False, device: str = "cpu", seed: int = 0,
         segmenter: str = "default", progress: bool = True) -> Path:
    """GRPO-train the model in ``model_path`` on ``dataset`` and save the result to ``out``.

    Args:
        coords: codec of the answers; None reads the folder's ``hlmat.json``, else the model type's default.
        group_size: answers sampled per state (GRPO's group, TRL's ``num_generations``).
        states: states per optimisation step (the step's batch is ``states * group_size`` answers).
        max_clicks: clicks per episode (5 = mIoU@5's budget).
        invalid_penalty: subtracted from the final IoU of an episode that ended on unparseable text.
        beta: weight of the KL to the start model (TRL's ``beta``; 0 loads no reference model).
        lr: learning rate (constant after a 5% warm-up).
        max_steps: optimisation steps; ``save_steps``: checkpoint period.
        temperature: sampling temperature of the group's answers.
        resume: continue from the last checkpoint in ``out/checkpoints`` (a fresh start when there is none).
        device: ``"cpu"``, ``"cuda"``... or ``"auto"``.
    Returns:
        ``out``, a folder that loads as ``mllm:OUT``.
    """
    import torch
    from trl import GRPOConfig, GRPOTrainer

    from agents.mllm.grpo import HLMATGRPOEnv

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    out, ckpt_dir = Path(out), Path(out) / "checkpoints"
    model, processor = load_vlm(model_path, device=device, dtype="float32")
    coords = coords or saved_codec(model_path) or DEFAULT_CODEC.get(getattr(model.config, "model_type", ""),
                                                                    "segagent-qwen")
    settings = {"model": str(model_path), "dataset": dataset, "coords": coords, "group_size": group_size,
                "states": states, "max_clicks": max_clicks, "invalid_penalty": invalid_penalty, "beta": beta,
                "lr": lr, "max_steps": max_steps, "save_steps": save_steps, "temperature": temperature,
                "max_new_tokens": max_new_tokens, "seed": seed, "segmenter": segmenter, "device": device,
                "trainer": "trl.GRPOTrainer", "rollout": "HLMATGRPOEnv (one turn per row, greedy continuation)"}
    has_ckpt = ckpt_dir.is_dir() and any(ckpt_dir.glob("checkpoint-*"))
    last = None
    if resume and has_ckpt:
        check_record(out / SETTINGS_RECORD, settings, f"the GRPO run in {out}", keys=RESUME_KEYS)
        last = resume_weights(model, ckpt_dir)  # Trainer's own resume restores none of a VLM's weights
    write_record(out / SETTINGS_RECORD, settings)
    torch.manual_seed(seed)
    env = HLMATGRPOEnv(model, processor, dataset, codec=coords, max_clicks=max_clicks,
                       invalid_penalty=invalid_penalty, segmenter=segmenter, max_new_tokens=max_new_tokens,
                       seed=seed)
    args = GRPOConfig(
        output_dir=str(ckpt_dir), num_generations=group_size, per_device_train_batch_size=states * group_size,
        gradient_accumulation_steps=1, max_steps=max_steps, learning_rate=lr, lr_scheduler_type="constant_with_warmup",
        warmup_steps=max(1, int(0.05 * max_steps)), beta=beta, temperature=temperature,
        max_completion_length=max_new_tokens, save_strategy="steps", save_steps=save_steps, save_total_limit=2,
        logging_steps=logging_steps, report_to=["tensorboard"],
        use_cpu=device == "cpu", bf16=False, seed=seed, data_seed=seed, dataloader_num_workers=0,
        remove_unused_columns=False, disable_tqdm=not progress,
    )
    model.train()
    old_tb = os.environ.get("TENSORBOARD_LOGGING_DIR")
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(out / "runs")  # read once, by the TensorBoard callback
    trainer = GRPOTrainer(model=model, reward_funcs=env.reward, args=args, train_dataset=env.dataset(),
                          processing_class=processor, rollout_func=env.rollout_func,
                          callbacks=[loadable_checkpoints(processor, {"coords": coords, "base_model": str(model_path),
                                                                       "trained_by": "hlmat grpo"})])
    if old_tb is None:
        os.environ.pop("TENSORBOARD_LOGGING_DIR")
    else:
        os.environ["TENSORBOARD_LOGGING_DIR"] = old_tb
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    trainer.save_model(str(out))
    complete_model_folder(out, processor, {"coords": coords, "base_model": str(model_path),
                                           "trained_by": "hlmat grpo"})
    log.info("GRPO: %d episodes, parse rate %.3f, %.1f env steps", env.totals["episodes"],
             env.totals["valid"] / max(1, env.totals["answers"]), env.totals["env_steps"])
    return out

