"""The reference agents: the oracle (the robot user as a policy, privileged by design) and random clicks.

Both register themselves as agent specs on import (``oracle``, ``random``).
"""
from __future__ import annotations

from agents.baselines.oracle import OracleAgent
from agents.baselines.random_agent import RandomAgent

__all__ = ["OracleAgent", "RandomAgent"]
