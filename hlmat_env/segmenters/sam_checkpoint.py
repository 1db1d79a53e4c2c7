"""Loading SAM checkpoints through segment-anything's own registry, with errors that name the file.

``sam_model_registry[model_type]`` builds the architecture (``vit_b``, ``vit_l``, ``vit_h``); the weights are
read here with ``torch.load(map_location="cpu", weights_only=True)`` (the registry's builder calls
``torch.load`` without ``map_location``, which fails for GPU-saved files on a CPU machine) and loaded with
``load_state_dict``. A mismatch between file and type is reported with a guess of the file's real type from
its tensor shapes. A custom architecture is loaded by passing a builder instead of a name: any callable
``builder(checkpoint=None) -> Sam`` that returns the model with its parameters in place.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union

from hlmat_env.errors import CheckpointError, unknown_name

if TYPE_CHECKING:  # pragma: no cover
    from segment_anything.modeling import Sam

SamBuilder = Callable[..., "Sam"]
ModelType = Union[str, SamBuilder, None]

# image-encoder width -> official model type, as in segment_anything.build_sam
OFFICIAL_WIDTHS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
_PATCH_KEY = "image_encoder.patch_embed.proj.weight"


def describe_state_dict(state: dict) -> tuple[str | None, str]:
    """Guess the official type of a SAM state dict from its shapes.

    Returns:
        (``"vit_b"``/``"vit_l"``/``"vit_h"`` or None, a short description such as "image encoder width 1024,
        24 blocks").
    """
    weight = state.get(_PATCH_KEY)
    if weight is None or not hasattr(weight, "shape"):
        return None, f"no {_PATCH_KEY!r} entry, so not a SAM state dict"
    width = int(weight.shape[0])
    blocks = {k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")}
    return OFFICIAL_WIDTHS.get(width), f"image encoder width {width}, {len(blocks)} blocks"


def checkpoint_identity(path: Path) -> str:
    """Short identity of a checkpoint file for cache keys: resolved path, size and modification time."""
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _builder(model_type: ModelType) -> tuple[SamBuilder, str]:
    from segment_anything import sam_model_registry

    if callable(model_type):
        return model_type, getattr(model_type, "__qualname__", repr(model_type))
    if model_type not in sam_model_registry:
        raise unknown_name("SAM model type", str(model_type), sam_model_registry)
    return sam_model_registry[model_type], str(model_type)


def _read_state_dict(path: Path) -> dict[str, Any]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise CheckpointError(f"cannot read SAM checkpoint {path}: {type(e).__name__}: {e}") from e
    if isinstance(state, dict) and _PATCH_KEY not in state:
        for wrapper in ("model", "state_dict"):  # training checkpoints often nest the weights
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    if not isinstance(state, dict):
        raise CheckpointError(f"SAM checkpoint {path} holds a {type(state).__name__}, not a state dict")
    return state


def load_sam(checkpoint: str | Path, model_type: ModelType = None, device: str = "cpu") -> tuple["Sam", str]:
    """Build SAM from the registry and load a checkpoint file into it.

    Args:
        checkpoint: path of an official SAM checkpoint (e.g. ``sam_vit_b_01ec64.pth``) or any file holding a
            matching state dict (optionally under a ``"model"`` or ``"state_dict"`` key).
        model_type: ``"vit_b"``, ``"vit_l"``, ``"vit_h"`` (``"default"`` = ``vit_h``), a builder
            ``f(checkpoint=None) -> Sam`` for custom architectures, or None to guess it from the file.
        device: torch device string for the model.

    Returns:
        (the model in eval mode on ``device``, the model type's name for cache keys and messages).

    Raises:
        CheckpointError: the file is missing, unreadable, or does not match ``model_type``.
        UnknownName: ``model_type`` is a string that is not in ``sam_model_registry``.
    """
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"SAM checkpoint {path} does not exist. Download an official one (sam_vit_b_01ec64.pth, "
            "sam_vit_l_0b3195.pth, sam_vit_h_4b8939.pth) and pass its path as sam_checkpoint= or "
            "$HLMAT_SAM_CHECKPOINT."
        )
    state = _read_state_dict(path)
    guess, described = describe_state_dict(state)
    if model_type is None:
        if guess is None:
            raise CheckpointError(
                f"cannot tell the SAM model type of {path} ({described}); pass sam_model_type="
                "'vit_b'|'vit_l'|'vit_h' or a builder for a custom architecture"
            )
        model_type = guess
    builder, type_name = _builder(model_type)
    official = "vit_h" if type_name == "default" else type_name
    if guess is not None and guess != official:
        hint = f"; it looks like {guess!r} ({described}): pass sam_model_type={guess!r}"
    elif guess is None:
        hint = f" ({described}, none of the official types {sorted(OFFICIAL_WIDTHS.values())})"
    else:
        hint = f" ({described})"
    mismatch = f"SAM checkpoint {path} does not match sam_model_type {type_name!r}{hint}"
    if official in OFFICIAL_WIDTHS.values() and guess != official:  # fail before building a large model
        raise CheckpointError(mismatch)
    model = builder(checkpoint=None)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{mismatch}. torch says: {first}") from e
    return model.to(device).eval(), type_name
