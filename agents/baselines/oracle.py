"""The oracle: the robot user (standard click simulator) acting as a policy, through a privileged view."""
from __future__ import annotations

from typing import Any

from agents.base import Agent, Decision, register_agent


class OracleAgent(Agent):
    """Clicks where the robot user would (``view.expert_action()``); finishes when no error is left.

    Privileged by design and visibly so (``privileged = True``: it acts through a
    :class:`agents.view.PrivilegedView`): it is the expert that generates demonstrations and the upper
    reference in benchmarks.
    """

    name = "oracle"
    privileged = True

    def act(self, obs: dict, view: Any) -> Decision:
        """The robot user's next click for the current state, or finish when no error pixel is left."""
        return Decision(view.expert_action())


register_agent("oracle", lambda arg=None, **kw: OracleAgent(**kw))
