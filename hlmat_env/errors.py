"""Exceptions raised by hlmat (a flat hierarchy, as in ``gymnasium.error``)."""
from __future__ import annotations

import difflib
from typing import Iterable


class HLMATError(Exception):
    """Base class of every error raised by hlmat."""


class InvalidAction(HLMATError, ValueError):
    """An action does not belong to the env's action space."""


class InvalidOption(HLMATError, ValueError):
    """A constructor argument or a ``reset`` option has a wrong type or value; the message names it."""


class DatasetError(HLMATError):
    """A dataset spec, folder or file cannot be read; the message names the file."""


class EmptyTarget(DatasetError):
    """A sample's target mask has no object pixel: nothing to annotate (the message names the sample/file)."""


class DatasetWarning(UserWarning):
    """A dataset was built but something in it was skipped or chosen (orphan files, duplicate stems);
    the message names the files."""


class UnknownName(HLMATError, KeyError):
    """A registry lookup (segmenter, dataset, agent) got a name it does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DependencyNotInstalled(HLMATError, ImportError):
    """An optional dependency is missing; the message gives the pip command."""


class CheckpointError(HLMATError):
    """A model checkpoint is missing or does not match the requested model."""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> UnknownName:
    """Build an :class:`UnknownName` with the valid choices and a "did you mean" hint."""
    choices = sorted(choices)
    hint = difflib.get_close_matches(name, choices, n=1)
    extra = f" Did you mean {hint[0]!r}?" if hint else ""
    return UnknownName(f"Unknown {kind} {name!r}; choose one of {choices}.{extra}")


def require(module: str, extra: str):
    """Import an optional dependency or raise :class:`DependencyNotInstalled` with the install line."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise DependencyNotInstalled(
            f"{module} is not installed; run `pip install \"hlmat[{extra}]\"`"
        ) from e
