"""YAML configuration files shared by the commands: ``base:`` inheritance and strict dataclasses."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def deep_update(base: dict, over: dict) -> dict:
    """``base`` with ``over`` merged in, recursing into nested mappings."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | Path, error: type[Exception] = ValueError, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML mapping; a ``base: other.yaml`` key (relative to the file) is merged underneath it."""
    import yaml

    p = Path(path).resolve()
    if p in _seen:
        raise error(f"{p}: 'base' chain loops back to itself")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError:
        raise error(f"{p}: config file not found") from None
    except yaml.YAMLError as exc:
        raise error(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise error(f"{p}: expected a mapping at the top level")
    base = data.pop("base", None)
    if base is not None:
        data = deep_update(read_yaml(p.parent / base, error, _seen + (p,)), data)
    return data


def strict_dataclass(cls: type[T], data: dict[str, Any], where: str) -> T:
    """``cls(**data)``, rejecting unknown keys with a message that lists the known ones."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    return cls(**data)
