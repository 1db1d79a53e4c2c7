"""The read-only view of an episode that agents act through.

An agent must decide from what a human annotator has: the image, the current mask, the description and the
clicks placed so far. The env also holds what no annotator has (the target mask, the dataset's samples, the
robot user, the IoU), so :func:`agents.rollout.run_episode` hands agents an :class:`EpisodeView` instead of
the env:

- ``image``, ``mask``, ``caption``, ``clicks``, ``coord_bins``, ``max_clicks``, ``num_clicks``: read-only
  copies (arrays with ``writeable=False``, a tuple of frozen clicks).
- ``snapshot()`` / ``restore(snapshot)`` / ``step(action)``: what look-ahead (the PRM stop signal, tree search)
  needs. ``step`` returns the observation and the end flags but neither the reward nor the env's ``info``
  (both carry the IoU with the target); a snapshot is an opaque token that only its own view can restore.

The view keeps its env outside the object (a module-level weak mapping), so the object itself has no
attribute, ``__dict__`` or referent that leads to the env. Python cannot stop code that goes looking in this
module's private names; the view closes every public route, and ``tests/test_view.py`` runs a cheating agent
through all of them.

The oracle *is* the robot user: agents whose class sets ``privileged = True`` get a :class:`PrivilegedView`,
which adds ``expert_click()`` / ``expert_action()``. :func:`view_for` makes that choice in one place.
"""
from __future__ import annotations

import weakref
from typing import Any, NamedTuple

import numpy as np

from hlmat_env.actions import Click

__all__ = ["EpisodeView", "PrivilegedView", "Snapshot", "StateView", "ViewStep", "view_for"]

# view -> the unwrapped env it reads; snapshot -> (its view, the env's state). Weak keys: nothing outlives use.
_ENVS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()
_STATES: "weakref.WeakKeyDictionary[Any, tuple[Any, dict]]" = weakref.WeakKeyDictionary()


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only copy of ``a`` (so that no agent can change the env's arrays through it)."""
    out = np.array(a, copy=True)
    out.flags.writeable = False
    return out


class ViewStep(NamedTuple):
    """What :meth:`EpisodeView.step` returns: the env's observation and end flags, without reward or info."""

    obs: dict
    terminated: bool
    truncated: bool


class Snapshot:
    """An opaque episode snapshot from :meth:`EpisodeView.snapshot`; only the view that made it restores it."""

    __slots__ = ("__weakref__",)

    def __repr__(self) -> str:
        return "<Snapshot>"


class EpisodeView:
    """Read-only view of the current episode of an :class:`hlmat_env.HLMATEnv` (wrapped or not).

    Args:
        env: the env whose episode is viewed (``env.unwrapped`` is read; look-ahead steps go to the
            unwrapped env, whose observation is the raw ``Dict`` one).
    """

    __slots__ = ("__weakref__",)

    def __init__(self, env: Any):
        _ENVS[self] = getattr(env, "unwrapped", env)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.num_clicks} clicks>"

    # ------------------------------------------------------------------ what an annotator sees
    @property
    def image(self) -> np.ndarray:
        """The full-resolution image, uint8 HxWx3 RGB (read-only copy)."""
        return _read_only(_ENVS[self].image)

    @property
    def mask(self) -> np.ndarray:
        """The current full-resolution mask, bool HxW (read-only copy)."""
        return _read_only(_ENVS[self].mask)

    @property
    def caption(self) -> str:
        """The description of the object to segment ("" when the dataset has none)."""
        return str(_ENVS[self].caption)

    @property
    def clicks(self) -> tuple[Click, ...]:
        """The clicks the segmenter currently sees, oldest first (pixel coordinates)."""
        return tuple(_ENVS[self].clicks)

    @property
    def num_clicks(self) -> int:
        """Number of clicks placed so far."""
        return len(_ENVS[self].clicks)

    @property
    def coord_bins(self) -> int:
        """Bins per axis of the action's click coordinates (``action_space`` is ``[3, B, B]``)."""
        return int(_ENVS[self].coord_bins)

    @property
    def max_clicks(self) -> int:
        """The click budget of an episode (truncation after it)."""
        return int(_ENVS[self].max_clicks)

    @property
    def obs_size(self) -> int:
        """Side of the observation's square image and mask."""
        return int(_ENVS[self].obs_size)

    # ------------------------------------------------------------------ look-ahead for search
    def snapshot(self) -> Snapshot:
        """An opaque token of the current state, for :meth:`restore`."""
        token = Snapshot()
        _STATES[token] = (self, _ENVS[self].get_state())
        return token

    def restore(self, snapshot: Snapshot) -> None:
        """Return the episode to ``snapshot`` (made by this view).

        Raises:
            ValueError: ``snapshot`` is not a snapshot of this view.
        """
        owner, state = _STATES.get(snapshot, (None, None)) if isinstance(snapshot, Snapshot) else (None, None)
        if owner is not self:
            raise ValueError(f"restore() takes a Snapshot made by this view's snapshot(), got {snapshot!r}")
        _ENVS[self].set_state(state)

    def step(self, action: np.ndarray) -> ViewStep:
        """Apply ``action`` (``[kind, x_bin, y_bin]``) to the episode, as look-ahead does before a
        :meth:`restore`. Returns the observation and end flags only: the reward and ``info`` hold the IoU."""
        obs, _, terminated, truncated, _ = _ENVS[self].step(action)
        return ViewStep(obs, bool(terminated), bool(truncated))


class PrivilegedView(EpisodeView):
    """An :class:`EpisodeView` plus the robot user: only for agents that *are* the robot user (the oracle)."""

    __slots__ = ()

    def expert_click(self) -> Click | None:
        """The robot user's next click for the current state (None when no error pixel is left)."""
        return _ENVS[self].expert_click()

    def expert_action(self) -> np.ndarray:
        """:meth:`expert_click` as an action (finish when no error pixel is left)."""
        return _ENVS[self].expert_action()


class StateView:
    """A view of one fixed state with no env behind it (to ask a policy about a mask, e.g. the MLLM's own
    IoU estimate): ``image``, ``mask``, ``caption``, ``clicks``, ``coord_bins``, no look-ahead."""

    __slots__ = ("image", "mask", "caption", "clicks", "coord_bins", "max_clicks", "obs_size")

    def __init__(self, image: np.ndarray, mask: np.ndarray, caption: str = "", clicks: tuple[Click, ...] = (),
                 coord_bins: int = 1000, max_clicks: int | None = None, obs_size: int = 128):
        self.image, self.mask = _read_only(image), _read_only(np.asarray(mask, bool))
        self.caption, self.clicks, self.coord_bins = caption, tuple(clicks), int(coord_bins)
        self.max_clicks, self.obs_size = max_clicks, int(obs_size)

    @property
    def num_clicks(self) -> int:
        """Number of clicks in this state."""
        return len(self.clicks)


def view_for(agent: Any, env: Any) -> EpisodeView:
    """The view ``agent`` acts through on ``env``: a :class:`PrivilegedView` when the agent declares
    ``privileged = True`` (the oracle, or a wrapper around it), else an :class:`EpisodeView`."""
    return PrivilegedView(env) if getattr(agent, "privileged", False) else EpisodeView(env)
