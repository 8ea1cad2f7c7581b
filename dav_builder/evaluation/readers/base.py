"""The reader interface: list a benchmark's clips cheaply, then load them one at a time."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from dav_builder.evaluation.sample import BenchmarkInfo, EvalSequence, ReaderError


class Reader:
    """A benchmark in its official layout under ``root``.  ``options`` (strings or typed values)
    override :attr:`defaults`; unknown ones are errors."""

    info: ClassVar[BenchmarkInfo]
    defaults: ClassVar[dict] = {}

    def __init__(self, root: str | Path, **options):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ReaderError(self.root, f"not a directory (expected the {self.info.title} data set: {self.info.source})")
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ValueError(f"{self.info.name}: unknown option(s) {unknown}; known: {sorted(self.defaults)}")
        self.opts = {k: _typed(k, options.get(k, v), v) for k, v in self.defaults.items()}

    def items(self) -> list[str]:
        """The clips, in a stable order (cheap: no image is decoded)."""
        raise NotImplementedError

    def load(self, item: str) -> EvalSequence:
        raise NotImplementedError


def _typed(key: str, value, default):
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return value.lower() in ("true", "1", "yes")
        return type(default)(value)
    except ValueError:
        raise ValueError(f"option {key}={value!r}: expected a {type(default).__name__}") from None
