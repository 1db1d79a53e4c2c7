"""hlmat_env: SegAgent's Human-Like Mask Annotation Task (HLMAT) as a Gymnasium environment.

Importing this package registers ``"HLMATEnv-v0"`` (safe to import twice)::

    import gymnasium as gym, hlmat_env
    env = gym.make("HLMATEnv-v0", dataset="synthetic:val")
"""
from __future__ import annotations

import gymnasium as gym

from hlmat_env.actions import ActionKind, Click, decode_action, encode_click
from hlmat_env.datasets import Dataset, Sample, make_dataset, register_dataset
from hlmat_env.env import HLMATEnv
from hlmat_env.errors import DatasetError, HLMATError, InvalidAction
from hlmat_env.robot_user import RobotUser, next_click
from hlmat_env.segmenters import Prediction, Segmenter, make_segmenter, register_segmenter

ENV_ID = "HLMATEnv-v0"

if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="hlmat_env.env:HLMATEnv")

__all__ = [
    "ENV_ID", "ActionKind", "Click", "Dataset", "DatasetError", "HLMATEnv", "HLMATError", "InvalidAction",
    "Prediction", "RobotUser", "Sample", "Segmenter", "decode_action", "encode_click", "make_dataset",
    "make_segmenter", "next_click", "register_dataset", "register_segmenter",
]
