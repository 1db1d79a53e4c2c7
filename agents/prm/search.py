"""PRM-guided tree search over env snapshots, as an agent wrapper.

SegAgent's greedy search (``beam = 1``): at each step take K candidate actions from the policy, apply each from
a snapshot (``view.snapshot``/``restore``, :mod:`agents.view`), score the K new masks with the PRM, keep the best; after the
budget (or when the estimate stops improving, with ``patience``) return the best-scoring step. The stronger
variant is **beam search** (``beam = B > 1``): the B best-scoring children of all expanded nodes survive each
step, so a click that only pays off one step later is not pruned at once.

Candidates at each node are the policy's own choice (``agent.act``) plus ``K - 1`` draws of
``agent.sample``; duplicates are applied once. So ``K = 1`` is the policy itself, and at every node the search
can only pick a child the PRM scores at least as high as the policy's.

The wrapper plans the whole episode at its first :meth:`act` (the env is restored to the start state
afterwards) and then replays the best path's clicks, then *finish*; the episode loop re-applies them for
real. Replay needs a deterministic segmenter (the default and SAM are). The policy must be Markov in the
state (image, mask, caption, clicks), as SegAgent's is: it is asked about states in any order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.base import Agent, Decision
from agents.prm.scorer import PRM
from agents.prm.stop import FINISH
from agents.view import Snapshot
from hlmat_env.actions import ActionKind


@dataclass
class Node:
    """A searched state: its env snapshot, observation, PRM score and the actions that lead to it."""

    state: Snapshot
    obs: dict
    score: float
    path: list[np.ndarray] = field(default_factory=list)
    terminal: bool = False


class TreeSearch(Agent):
    """Greedy (``beam=1``) or beam search over ``agent``'s candidate clicks, scored by ``prm``.

    Args:
        agent: the policy proposing candidates (``act`` and ``sample``).
        prm: a scorer with ``score_batch(image, masks, caption)`` (:mod:`agents.prm.scorer`).
        k: candidates per expanded node (>= 1).
        beam: nodes kept per depth (>= 1; 1 = SegAgent's greedy search).
        patience: stop expanding after this many depths without a better best score (None: search to the
            click budget).
        seed: seed of the sampling generator (the benchmark replaces ``rng`` per episode).
    """

    def __init__(self, agent: Agent, prm: PRM, k: int = 3, beam: int = 1, patience: int | None = None,
                 seed: int = 0):
        if k < 1 or beam < 1 or (patience is not None and patience < 1):
            raise ValueError(f"k, beam and patience must be >= 1, got k={k}, beam={beam}, patience={patience}")
        self.agent, self.prm, self.k, self.beam, self.patience = agent, prm, int(k), int(beam), patience
        self.rng = np.random.default_rng(seed)
        base = getattr(agent, "name", "agent")
        self.name = f"{base}+search(k={k}{f',beam={beam}' if beam > 1 else ''})"

    @property
    def privileged(self) -> bool:  # type: ignore[override]
        """A wrapper acts through the view its wrapped agent is entitled to (privileged only around the oracle)."""
        return bool(getattr(self.agent, "privileged", False))

    def reset(self, view: Any) -> None:
        """Start of an episode: reset the wrapped agent and this wrapper's state."""
        self.agent.reset(view)
        self._plan: list[np.ndarray] | None = None

    def act(self, obs: dict, view: Any) -> Decision:
        """Choose the next action for ``obs`` (see :meth:`agents.base.Agent.act`)."""
        if self._plan is None:
            self._plan = list(self.search(obs, view).path)
        if self._plan:
            return Decision(self._plan.pop(0))
        return Decision(FINISH.copy())

    def sample(self, obs: dict, view: Any, k: int, rng: np.random.Generator) -> list[Decision]:
        """``k`` candidate decisions for tree search (see :meth:`agents.base.Agent.sample`)."""
        return self.agent.sample(obs, view, k, rng)

    def candidates(self, obs: dict, view: Any) -> list[np.ndarray]:
        """Distinct click actions at the env's current state: the policy's choice first, then samples."""
        decisions = [self.agent.act(obs, view)]
        if self.k > 1:
            decisions += self.agent.sample(obs, view, self.k - 1, self.rng)
        out: list[np.ndarray] = []
        for d in decisions:
            if d.valid and int(d.action[0]) != ActionKind.FINISH and not any(np.array_equal(d.action, a) for a in out):
                out.append(np.asarray(d.action, dtype=np.int64))
        return out

    def expand(self, node: Node, view: Any) -> list[Node]:
        """Apply each candidate at ``node`` from its snapshot and score the children (batched PRM call)."""
        view.restore(node.state)
        children, masks = [], []
        for action in self.candidates(node.obs, view):
            view.restore(node.state)
            obs, terminated, truncated = view.step(action)
            children.append(Node(view.snapshot(), obs, 0.0, node.path + [action], terminated or truncated))
            masks.append(view.mask)
        for child, score in zip(children, self.prm.score_batch(view.image, masks, view.caption)):
            child.score = float(score)
        return children

    def search(self, obs: dict, view: Any) -> Node:
        """The best-scoring node found from the env's current state (restored afterwards)."""
        root = Node(view.snapshot(), obs, float(self.prm.score(view.image, view.mask, view.caption)))
        best, beam, stale = root, [root], 0
        while beam:
            children = [c for node in beam for c in self.expand(node, view)]
            if not children:
                break
            children.sort(key=lambda c: -c.score)
            beam = [c for c in children[: self.beam] if not c.terminal]
            if children[0].score > best.score:
                best, stale = children[0], 0
            else:
                stale += 1
                if self.patience is not None and stale >= self.patience:
                    break
        view.restore(root.state)
        return best
