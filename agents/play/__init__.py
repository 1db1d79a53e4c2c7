"""Play it yourself: people annotate in ``HLMATEnv`` from a browser page, and their episodes are recorded.

- ``session`` (:class:`PlaySession`, :class:`PlayConfig`): the server side of one person's session; the env
  does all the work, the page sends pixel clicks and gets the env's render back.
- ``recording``: crash-safe JSONL, the schema ``hlmat generate`` writes plus per-click timestamps and the
  session id (:func:`read_human` reads it back).
- ``app`` (:func:`create_app`): the FastAPI app (token, validated bodies, bounded sizes) and its static page.
- ``replay`` (:func:`replay_in_env`, :class:`ReplaySource`): any trajectory again, in the env or on the page.
- ``report`` (:func:`play_report`): humans beside the robot user and agents on the same samples, and where
  human clicks fall compared with the robot user's.

Commands: ``hlmat play`` (serve, or ``--replay FILE``) and ``hlmat play-report``. Needs the ``play`` extra
(``pip install "hlmat[play]"``: FastAPI and uvicorn) for the server; the rest needs only hlmat.
"""
from __future__ import annotations

from agents.lazy import lazy_getattr

__all__ = ["PlayConfig", "PlaySession", "ReplaySource", "create_app", "play_report", "read_human",
           "replay_in_env"]

_LAZY = {"PlayConfig": "agents.play.session", "PlaySession": "agents.play.session",
         "ReplaySource": "agents.play.replay", "replay_in_env": "agents.play.replay",
         "create_app": "agents.play.app", "play_report": "agents.play.report",
         "read_human": "agents.play.recording"}

__getattr__ = lazy_getattr("agents.play", _LAZY)
