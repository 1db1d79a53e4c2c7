"""Registered variants of ``HLMATEnv-v0``: a ladder of easier tasks for reinforcement learning, as MiniGrid has.

Each rung keeps the env, its spaces and its reward, and changes only keyword arguments (the dataset's objects
per scene, the start state), so a policy trained on one rung runs on every other. Rungs 1-4 each remove the need
to ground the description in their own way (no other object; the target's box; a damaged copy of the target);
the standard task, last, needs it. The order is the suggested curriculum: rungs 1 and 2 have one object per scene,
first with its box shown (a click must tell the object from the background inside it), then from an empty mask
(the object must be found); rungs 3 and 4 start from a mask that a click must improve on (finishing at once keeps
the start's IoU), in crowded scenes:

| rung | id | kwargs | what the agent must learn |
|---|---|---|---|
| 1 | `HLMATEnv-OneObjectBox-v0` | `dataset="synthetic:train?objects=1", start="box"` | click the object inside its box |
| 2 | `HLMATEnv-OneObject-v0` | `dataset="synthetic:train?objects=1"` | find and click the only object |
| 3 | `HLMATEnv-Box-v0` | `dataset="synthetic:train", start="box"` | refine a box around the target |
| 4 | `HLMATEnv-Refine-v0` | `dataset="synthetic:train", start="degraded"` | refine an irregular damaged mask |
| 5 | `HLMATEnv-v0` | (none: the standard task) | ground the description, then all of the above |

Every registered default trains on the ``synthetic`` **train** split (2000 scenes; ``?size=20000`` for more).
Evaluate on the disjoint val split by overriding the dataset, e.g.
``gym.make("HLMATEnv-OneObject-v0", dataset="synthetic:val?objects=1")`` (:data:`VARIANTS` gives each rung's
``val_dataset``). Any other keyword (``max_clicks``, ``segmenter``...) overrides the registered ones the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

ENTRY_POINT = "hlmat_env.env:HLMATEnv"


@dataclass(frozen=True)
class Variant:
    """One rung of the ladder.

    Attributes:
        rung: position on the ladder, 1 = easiest; the standard task is the last rung.
        kwargs: the registered ``HLMATEnv`` keyword arguments (training split).
        val_dataset: the dataset spec to evaluate on (pass it as ``dataset=`` to ``gym.make``).
        description: one line: what the variant gives the agent and what it tests.
    """

    rung: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    val_dataset: str = "synthetic:val"
    description: str = ""

    def val_kwargs(self) -> dict[str, Any]:
        """``gym.make`` keyword arguments of this variant on the val split: the registered ones, val dataset.

        Returns:
            A new dict, e.g. ``{"dataset": "synthetic:val", "start": "box"}``.
        """
        return {**self.kwargs, "dataset": self.val_dataset}

    def benchmark_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`agents.tools.benchmark.benchmark` that evaluate on this variant's val split.

        Returns:
            ``{"dataset": ..., "env_kwargs": {...}}`` (the start state, when not empty, goes in ``env_kwargs``,
            where the benchmark reads it as its protocol's start).
        """
        kwargs = self.val_kwargs()
        return {"dataset": kwargs.pop("dataset"), "env_kwargs": kwargs}


VARIANTS: dict[str, Variant] = {
    "HLMATEnv-OneObjectBox-v0": Variant(
        1, {"dataset": "synthetic:train?objects=1", "start": "box"}, "synthetic:val?objects=1",
        "one object per scene, start from its filled bounding box (also the segmenter's prompt): the mask shows "
        "where the object is; tests telling the object's pixels from the background's inside the box"),
    "HLMATEnv-OneObject-v0": Variant(
        2, {"dataset": "synthetic:train?objects=1"}, "synthetic:val?objects=1",
        "one object per scene, empty start: the description names the only object, so no grounding is needed; "
        "tests finding an object on a cluttered background and clicking it (the from-scratch PPO rung)"),
    "HLMATEnv-Box-v0": Variant(
        3, {"dataset": "synthetic:train", "start": "box"}, "synthetic:val",
        "standard scenes, start from the target's filled bounding box (also the segmenter's prompt): the box "
        "locates the target, so no grounding is needed; tests refining a box with clicks that must beat it"),
    "HLMATEnv-Refine-v0": Variant(
        4, {"dataset": "synthetic:train", "start": "degraded"}, "synthetic:val",
        "standard scenes, start from a randomly damaged target (eroded or dilated, shifted, blobs; drawn from "
        "the env's RNG): mask refinement, errors anywhere along the boundary, some starts nearly empty"),
    "HLMATEnv-v0": Variant(
        5, {}, "synthetic:val",
        "the standard task: 3-6 objects, empty start; the description must be grounded to find the target"),
}
"""The ladder, easiest rung first: id -> :class:`Variant` (registered kwargs, val dataset, description)."""


def register_id(env_id: str, kwargs: dict[str, Any] | None = None) -> bool:
    """Register one id of this env (string entry point) unless it is registered already.

    Gymnasium's passive env checker is off by default for these ids (``disable_env_checker=True``): in
    gymnasium 1.4 it cannot recover when the *first* ``reset`` raises (a bad sample's ``DatasetError`` /
    ``EmptyTarget``, a bad option's ``InvalidOption``): its data-reuse check then unpacks ``None`` on every
    later ``step``, so a loop that skips a bad sample dies with a ``TypeError`` inside gymnasium. The env meets
    the full ``gymnasium.utils.env_checker.check_env`` (the contract tests run it); ``gym.make(...,
    disable_env_checker=False)`` turns the passive checker back on.

    Args:
        env_id: the id, e.g. ``"HLMATEnv-v0"``.
        kwargs: the registered constructor keywords.

    Returns:
        Whether this call registered it.
    """
    if env_id in gym.registry:
        return False
    gym.register(id=env_id, entry_point=ENTRY_POINT, kwargs=dict(kwargs or {}), disable_env_checker=True)
    return True


def register_variants() -> list[str]:
    """Register every id of :data:`VARIANTS` not registered yet (string entry point, the table's kwargs).

    Safe to call any number of times; ``HLMATEnv-v0`` itself is registered by :mod:`hlmat_env`.

    Returns:
        The ids registered by this call.
    """
    return [env_id for env_id, variant in VARIANTS.items() if register_id(env_id, variant.kwargs)]
