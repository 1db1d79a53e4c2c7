"""hlmat_env: SegAgent's Human-Like Mask Annotation Task (HLMAT) as a Gymnasium environment.

Importing this package registers ``"HLMATEnv-v0"`` and the easier variants of :data:`~hlmat_env.variants.VARIANTS`
(``"HLMATEnv-OneObjectBox-v0"``, ``"HLMATEnv-OneObject-v0"``, ``"HLMATEnv-Box-v0"``, ``"HLMATEnv-Refine-v0"``; safe
to import twice)::

    import gymnasium as gym, hlmat_env
    env = gym.make("HLMATEnv-v0", dataset="synthetic:val")

``__all__`` lists what users import from here: the env, clicks and actions, the typed errors, datasets,
segmenters, the robot user, metrics and trajectories. The wrappers stay in their modules
(:mod:`hlmat_env.wrappers`, :mod:`hlmat_env.wrappers_text`), as do the codecs and exports. Importing the package
pulls no heavy optional dependency (no torch, transformers or SAM until a SAM segmenter is built).
"""
from __future__ import annotations

from hlmat_env.actions import ActionKind, Click, decode_action, encode_click
from hlmat_env.datasets import Dataset, Sample, make_dataset, register_dataset
from hlmat_env.datasets.coco import CocoDataset, RefCocoDataset, SegAgentDataset
from hlmat_env.datasets.folder import FolderDataset
from hlmat_env.datasets.synthetic import SyntheticDataset
from hlmat_env.env import HLMATEnv
from hlmat_env.errors import (CheckpointError, DatasetError, DatasetWarning, DependencyNotInstalled, EmptyTarget,
                              HLMATError, InvalidAction, InvalidOption, UnknownName)
from hlmat_env.metrics import ciou, giou, intersection_union, iou, noc_at, summarize
from hlmat_env.robot_user import RobotUser, next_click
from hlmat_env.segmenters import (GrabCutSegmenter, GraphCutSegmenter, Prediction, Sam2Segmenter, SamSegmenter,
                                  Segmenter, make_segmenter, register_segmenter, segmenter_version)
from hlmat_env.trajectories import (Step, Trajectory, TrajectoryError, iter_trajectories, read_jsonl, read_segagent,
                                    record_trajectory, write_jsonl, write_segagent)
from hlmat_env.variants import VARIANTS, register_id, register_variants

ENV_ID = "HLMATEnv-v0"

register_id(ENV_ID)  # passive env checker off: see register_id
register_variants()  # the ladder of easier variants (hlmat_env.variants)

__all__ = [
    # the env and its actions
    "ENV_ID", "VARIANTS", "HLMATEnv", "ActionKind", "Click", "decode_action", "encode_click",
    # typed errors (hlmat_env.errors)
    "HLMATError", "InvalidAction", "InvalidOption", "DatasetError", "EmptyTarget", "DatasetWarning",
    "UnknownName", "DependencyNotInstalled", "CheckpointError", "TrajectoryError",
    # datasets
    "Dataset", "Sample", "make_dataset", "register_dataset", "SyntheticDataset", "FolderDataset", "CocoDataset",
    "RefCocoDataset", "SegAgentDataset",
    # segmenters
    "Segmenter", "Prediction", "make_segmenter", "register_segmenter", "segmenter_version", "GraphCutSegmenter", "Sam2Segmenter",
    "GrabCutSegmenter", "SamSegmenter",
    # the robot user and metrics
    "RobotUser", "next_click", "iou", "intersection_union", "noc_at", "summarize", "ciou", "giou",
    # demonstrations
    "Trajectory", "Step", "record_trajectory", "read_jsonl", "write_jsonl", "iter_trajectories", "read_segagent",
    "write_segagent",
]
