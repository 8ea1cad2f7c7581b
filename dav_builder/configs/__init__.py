"""Example configurations shipped with the package (``dav-build --list-configs``).

``build*.yaml`` are ``dav-build`` configs (``--config``), ``train*.yaml`` are ``dav-train`` configs.
The first comment line of each file says what it is for.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def list_configs() -> dict[str, tuple[Path, str]]:
    """Name -> (path, the file's first comment line)."""
    out = {}
    for p in sorted(HERE.glob("*.yaml")):
        first = next((ln.lstrip("# ").strip() for ln in p.read_text().splitlines() if ln.startswith("#")), "")
        out[p.stem] = (p, first)
    return out


def config_path(name: str) -> Path:
    """The path of shipped config ``name`` (with or without ``.yaml``); KeyError when there is none."""
    shipped = list_configs()
    key = name[:-5] if name.endswith(".yaml") else name
    if key not in shipped:
        raise KeyError(name)
    return shipped[key][0]
