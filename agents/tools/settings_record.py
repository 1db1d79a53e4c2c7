"""Settings records beside reusable outputs (demonstrations, cached training states, generation runs).

A folder that is reused on a later run must have been made the same way: above all with the same segmenter
*code* (:func:`hlmat_env.segmenters.segmenter_version`), since the same name and kwargs give other masks
after the segmenter changes. Each reusable file gets a JSON record of its settings; a reuse with other
settings is refused with the differences named, instead of silently mixing old and new states.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from hlmat_env.errors import HLMATError


def _jsonable(settings: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(settings, default=repr))


def write_record(path: str | Path, settings: dict[str, Any]) -> None:
    """Write ``settings`` (JSON; non-JSON values by ``repr``) to ``path``, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(settings), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def check_record(path: str | Path, settings: dict[str, Any], what: str,
                 keys: Iterable[str] | None = None) -> None:
    """Refuse (:class:`HLMATError`) to reuse ``what`` when its record at ``path`` is missing or differs from
    ``settings`` in any of ``keys`` (default: all keys of either)."""
    path = Path(path)
    if not path.is_file():
        raise HLMATError(f"{what} has no settings record {path.name} (written by an older hlmat, or not by "
                         "hlmat): it may come from another segmenter version; delete it or choose another "
                         "folder")
    old, new = json.loads(path.read_text()), _jsonable(settings)
    names = sorted(set(old) | set(new)) if keys is None else list(keys)
    diff = {k: (old.get(k), new.get(k)) for k in names if old.get(k) != new.get(k)}
    if diff:
        raise HLMATError(f"{what} was made with other settings (recorded, now): {diff}; delete it or choose "
                         "another folder")
