"""hlmat_env's public API is typed and documented: every ``__all__`` name imports, every public function, class
and method of every module has a docstring, the env's gym methods carry return annotations, and the package
ships ``py.typed``.

The helpers take a package name, so the same checks can run on ``agents``.
"""
from __future__ import annotations

import configparser
import importlib
import inspect
import pkgutil
import typing
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import hlmat_env

REPO = Path(__file__).resolve().parents[1]


def iter_modules(package: str, skip_import_errors: bool = False) -> Iterator[ModuleType]:
    """The package and every module under it (``__main__`` modules left out), imported.

    Args:
        package: a package name, e.g. ``"hlmat_env"``.
        skip_import_errors: skip modules that need a missing optional dependency (an ``ImportError``) instead
            of failing.
    """
    root = importlib.import_module(package)
    yield root
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if info.name.rsplit(".", 1)[-1] == "__main__":  # importing it would run the program
            continue
        try:
            yield importlib.import_module(info.name)
        except ImportError:
            if not skip_import_errors:
                raise


def _members(cls: type) -> Iterator[tuple[str, Any]]:
    """Public methods and properties defined in ``cls`` itself (not inherited), unwrapped to their function."""
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        elif isinstance(value, property):
            value = value.fget
        if inspect.isfunction(value):
            yield name, value


def public_objects(package: str, skip_import_errors: bool = False) -> Iterator[tuple[str, Any]]:
    """``(qualified name, object)`` of every public function, class and method defined in the package's modules.

    Public: the name has no leading underscore at any level, and the object is defined in the module that is
    walked (re-exports are checked where they are defined).
    """
    for module in iter_modules(package, skip_import_errors):
        for name, obj in vars(module).items():
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            yield f"{module.__name__}.{name}", obj
            if inspect.isclass(obj):
                for member, fn in _members(obj):
                    yield f"{module.__name__}.{name}.{member}", fn


def missing_docstrings(package: str, skip_import_errors: bool = False) -> list[str]:
    """Qualified names of the package's public functions, classes and methods without a docstring of their own."""
    return sorted({name for name, obj in public_objects(package, skip_import_errors)
                   if not (obj.__doc__ or "").strip()})


def test_every_all_name_imports():
    assert len(hlmat_env.__all__) == len(set(hlmat_env.__all__))
    for name in hlmat_env.__all__:
        assert getattr(hlmat_env, name) is not None, name
    for name in ("HLMATEnv", "Click", "make_dataset", "make_segmenter", "HLMATError", "InvalidOption",
                 "DatasetError", "iou", "Trajectory", "record_trajectory"):
        assert name in hlmat_env.__all__, name


def test_every_public_object_of_hlmat_env_has_a_docstring():
    names = [name for name, _ in public_objects("hlmat_env")]
    assert len(names) > 150  # the walk found the package's API
    assert missing_docstrings("hlmat_env") == []


def test_env_methods_have_return_annotations():
    from hlmat_env.env import HLMATEnv

    for method in ("reset", "step", "render", "click", "expert_action", "expert_click", "get_state", "set_state"):
        hints = typing.get_type_hints(getattr(HLMATEnv, method))
        assert "return" in hints, method


def test_the_package_ships_py_typed():
    assert (Path(hlmat_env.__file__).parent / "py.typed").is_file()
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert "py.typed" in cfg["options.package_data"]["hlmat_env"]


def test_every_public_object_of_agents_has_a_docstring():
    """The same check on the upper floor (modules whose optional extras are missing are skipped)."""
    assert missing_docstrings("agents", skip_import_errors=True) == []
