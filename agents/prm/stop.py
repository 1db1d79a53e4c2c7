"""The PRM stop signal: wrap any agent so that it stops when the PRM's estimate stops improving, and the
episode's answer is the step with the highest estimated IoU (SegAgent's use of its PRM as a stop signal).

How it works, with ``patience = p``: before each click the wrapper applies the agent's action from a snapshot
(``view.snapshot``/``restore``), scores the resulting mask with the PRM and restores the snapshot. A click
whose estimate beats the best so far is returned (the episode loop then applies it for real); after ``p``
non-improving clicks in a row, or when the next click would be the last of the budget and does not improve,
the wrapper restores the best-scoring state with ``view.restore`` and returns *finish*. The env's mask is then
the answer, and :func:`agents.rollout.run_episode` cuts the episode's IoU curve back to that step, so the
benchmark reports the IoU of the best-estimated step. With ``p = 1`` no non-improving click is ever applied.
Costs one extra segmenter call and one PRM call per step; segmenters must be deterministic (same clicks and
previous state, same mask), which the default and SAM segmenters are.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from agents.base import Agent, Decision
from agents.view import Snapshot
from agents.prm.scorer import PRM
from hlmat_env.actions import ActionKind

FINISH = np.array([ActionKind.FINISH, 0, 0], dtype=np.int64)


class PRMStop(Agent):
    """Stop ``agent`` when ``prm``'s estimate stops improving; answer with the best-estimated step.

    Args:
        agent: any agent (its invalid outputs pass through unchanged: the episode keeps its current mask).
        prm: a scorer with ``score(image, mask, caption)`` (:mod:`agents.prm.scorer`).
        patience: non-improving clicks tolerated in a row before stopping (>= 1).
        min_gain: an estimate must beat the best by more than this to count as an improvement.
    """

    def __init__(self, agent: Agent, prm: PRM, patience: int = 1, min_gain: float = 0.0):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.agent, self.prm, self.patience, self.min_gain = agent, prm, int(patience), float(min_gain)
        self.name = f"{getattr(agent, 'name', 'agent')}+prm-stop"

    @property
    def privileged(self) -> bool:  # type: ignore[override]
        """A wrapper acts through the view its wrapped agent is entitled to (privileged only around the oracle)."""
        return bool(getattr(self.agent, "privileged", False))

    @property
    def rng(self) -> Any:
        """The wrapped agent's sampling generator (None when it has none), so the benchmark's per-episode
        reseeding reaches it and the wrapped run draws the same clicks as the bare policy until it stops."""
        return getattr(self.agent, "rng", None)

    @rng.setter
    def rng(self, value: Any) -> None:
        if hasattr(self.agent, "rng"):
            self.agent.rng = value

    def reset(self, view: Any) -> None:
        """Start of an episode: reset the wrapped agent and this wrapper's state."""
        self.agent.reset(view)
        self.best_score: float | None = None
        self.best_state: Snapshot | None = None
        self.best_pending = False  # the best state is the one the next act() starts from
        self.bad = 0

    def act(self, obs: dict, view: Any) -> Decision:
        """Choose the next action for ``obs`` (see :meth:`agents.base.Agent.act`)."""
        if self.best_score is None:
            self.best_score, self.best_state = self.prm.score(view.image, view.mask, view.caption), view.snapshot()
        elif self.best_pending:
            self.best_state, self.best_pending = view.snapshot(), False
        decision = self.agent.act(obs, view)
        if not decision.valid:
            return decision
        if int(decision.action[0]) == ActionKind.FINISH:
            return self._finish(view, decision.text)
        snapshot = view.snapshot()
        truncated = view.step(decision.action).truncated
        score = self.prm.score(view.image, view.mask, view.caption)
        view.restore(snapshot)
        if score > self.best_score + self.min_gain:
            self.best_score, self.best_pending, self.bad = score, True, 0
            return decision
        self.bad += 1
        if self.bad >= self.patience or truncated:
            return self._finish(view, decision.text)
        return decision

    def _finish(self, view: Any, text: str | None) -> Decision:
        """Restore the best-estimated state (unless it is the current one) and finish."""
        if not self.best_pending and self.best_state is not None:
            view.restore(self.best_state)
        return Decision(FINISH.copy(), text=text)

    def sample(self, obs: dict, view: Any, k: int, rng: np.random.Generator) -> list[Decision]:
        """``k`` candidate decisions for tree search (see :meth:`agents.base.Agent.sample`)."""
        return self.agent.sample(obs, view, k, rng)
