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


def strict_dataclass(cls: type[T], data: dict[str, Any], where: str, error: type[Exception] = ValueError) -> T:
    """``cls(**data)``, recursing into fields whose default is itself a dataclass, and rejecting
    anything but a mapping and unknown keys with a message that names where and lists the known
    ones (``where`` "" is the top level, called "config" in messages)."""
    if not isinstance(data, dict):
        raise error(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"{where or 'config'}: unknown key(s) {unknown}; known: {sorted(known)}")
    base = cls()
    kwargs = {}
    for name, value in data.items():
        default = getattr(base, name)
        if dataclasses.is_dataclass(default):
            value = strict_dataclass(type(default), value, f"{where}.{name}" if where else name, error)
        kwargs[name] = value
    return cls(**kwargs)
