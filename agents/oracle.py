"""The oracle: the robot user (standard click simulator) acting as a policy through the env's public API."""
from __future__ import annotations

from typing import Any

from agents.base import Agent, Decision, register_agent


class OracleAgent(Agent):
    """Clicks where the robot user would (``env.expert_action()``); finishes when no error is left.

    Privileged by design: it is the expert that generates demonstrations and the upper reference in benchmarks.
    """

    name = "oracle"

    def act(self, obs: dict, env: Any) -> Decision:
        return Decision(env.expert_action())


register_agent("oracle", lambda arg=None, **kw: OracleAgent(**kw))
