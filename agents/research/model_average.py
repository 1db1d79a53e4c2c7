"""Uniform weight averaging of fine-tuned checkpoints of one architecture ("model soup", Wortsman et al. 2022;
snapshot averaging along one training run, as in SWA, Izmailov et al. 2018).

Why: successive SFT runs of the same model (each with its own warm-up and cosine decay) end at nearby points
whose individual held-out scores scatter by several IoU points; their mean weights score at least as well as
the typical member at no training cost. Floating-point tensors are averaged in float32, one model in memory
at a time besides the running sum; integer buffers must agree across models and are kept.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from agents.mllm.policy import complete_model_folder, load_vlm, saved_codec
from hlmat_env.errors import CheckpointError


def average_models(sources: Sequence[str | Path], out: str | Path) -> Path:
    """Write the uniform average of the model folders ``sources`` (same architecture and parameter names)
    to ``out`` with the first folder's processor, so that ``mllm:OUT`` loads it.

    Raises:
        CheckpointError: fewer than two sources, different parameter names or shapes, integer buffers that
            differ, or sources fine-tuned with different coordinate codecs.
    """
    import torch

    if len(sources) < 2:
        raise CheckpointError(f"averaging needs at least two model folders, got {len(sources)}")
    missing = [str(s) for s in sources if not (Path(s) / "config.json").is_file()]
    if missing:  # before loading anything: a real model takes minutes to load
        raise CheckpointError(f"no model folder (config.json missing) at: {', '.join(missing)}")
    codecs = {c for c in map(saved_codec, sources) if c is not None}  # None: no hlmat.json
    if len(codecs) > 1:
        raise CheckpointError(f"the models were fine-tuned with different coordinate codecs: {sorted(codecs)}")
    first, processor = load_vlm(sources[0], dtype="float32")
    reference = first.state_dict()
    total = {k: v.detach().clone().float() for k, v in reference.items() if v.is_floating_point()}
    for src in sources[1:]:
        model, _ = load_vlm(src, dtype="float32")
        state = model.state_dict()
        if state.keys() != reference.keys():
            diff = sorted(set(state) ^ set(reference))[:5]
            raise CheckpointError(f"{src} has other parameters than {sources[0]} (e.g. {diff})")
        for k, v in state.items():
            if v.shape != reference[k].shape:
                raise CheckpointError(f"{src}: {k} has shape {tuple(v.shape)}, "
                                      f"{sources[0]} {tuple(reference[k].shape)}")
            if k in total:
                total[k] += v.float()
            elif not torch.equal(v, reference[k]):
                raise CheckpointError(f"{src}: integer buffer {k} differs from {sources[0]}'s")
        del model, state
    first.load_state_dict({k: (total[k] / len(sources)).to(v.dtype) if k in total else v
                           for k, v in reference.items()})
    out = Path(out)
    first.save_pretrained(out)
    settings = {"averaged_from": [str(s) for s in sources]}
    if codecs:
        settings["coords"] = codecs.pop()
    complete_model_folder(out, processor, settings)
    return out
