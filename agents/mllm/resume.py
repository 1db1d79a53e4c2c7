"""Checkpoints of a ``Trainer`` run of a VLM, for ``sft`` and ``grpo``: each loadable as ``mllm:PATH``, and resuming
from the weights of the last ``checkpoint-N``.

``Trainer``'s own resume restores none of these VLMs' weights (transformers 5.24): ``save_pretrained`` writes the
checkpoint-format key names (``model.layers...``) and the resume loads the file into the model as it is
(``model.language_model.layers...``), so every key is "missing" and training silently goes on from the start
model's weights. :func:`resume_weights` copies them through ``from_pretrained``, which maps the names back; the
optimizer, scheduler, RNG and step count still come from ``Trainer`` (pass it the returned folder).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def load_weights(model: Any, folder: str | Path) -> None:
    """Copy the weights saved in ``folder`` (a ``save_pretrained`` checkpoint) into ``model``, strictly."""
    saved = type(model).from_pretrained(folder, dtype=next(model.parameters()).dtype)
    model.load_state_dict(saved.state_dict(), strict=True)
    log.info("resumed the weights of %s", folder)


def resume_weights(model: Any, ckpt_dir: str | Path) -> Path | None:
    """Load the weights of the last ``checkpoint-N`` in ``ckpt_dir`` into ``model``; returns that folder, or
    None (weights untouched) when there is none."""
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(ckpt_dir)) if Path(ckpt_dir).is_dir() else None
    if last is None:
        return None
    load_weights(model, last)
    return Path(last)


def loadable_checkpoints(processor: Any, settings: dict[str, Any]) -> Any:
    """A ``TrainerCallback`` that gives each ``checkpoint-N`` the processor and ``hlmat.json`` too, so that an
    intermediate checkpoint can be benchmarked as it is (``mllm:OUT/checkpoints/checkpoint-N``)."""
    from transformers import TrainerCallback

    from agents.mllm.policy import complete_model_folder

    class LoadableCheckpoints(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                complete_model_folder(folder, processor, settings)

    return LoadableCheckpoints()
