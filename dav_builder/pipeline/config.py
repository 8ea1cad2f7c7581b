"""Typed configuration of ``dav-build``, loadable from YAML.

Every field has a default that works on a laptop; a YAML file given with ``--config`` overrides
any subset, e.g.::

    split:
      detector: content
      threshold: 27
    clips:
      lengths: [32, 16]
    buckets:
      mode: resize
      sizes: [[352, 640], [480, 640]]
    scoring:
      clip: {model: ViT-B-32, pretrained: /models/open_clip_vit_b32.bin}

Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dav_builder.config_io import read_yaml, strict_dataclass

from dav_builder.filters.config import ScoringConfig


class ConfigError(ValueError):
    """A configuration file or option is invalid."""


@dataclass
class SplitConfig:
    """Where captures break into scenes."""

    detector: str = "content"
    """PySceneDetect detector on reduced RGB: ``content`` (ContentDetector), ``adaptive``, ``hash`` or ``none``."""
    threshold: float | None = None
    """Detector threshold; None = the detector's own default (content 27, adaptive 3.0, hash 0.395)."""
    min_scene_len: int = 4
    """Frames that must pass after a cut before the detector may report another."""
    small_side: int = 128
    """Longer side, in pixels, of the reduced RGB used for detection and model-free checks."""
    read_threads: int = 0
    """Threads decoding frames ahead of the splitter (image decoding and depth conversion release
    the GIL); 0 = as many as the CPUs this process may use, at most 4; 1 = read in line."""
    read_ahead_mb: int = 256
    """Memory the frames decoded ahead may hold (about 10 bytes per pixel each): a deep queue keeps
    the reading threads busy while the splitter scores a batch of clips; at least 2 and at most
    16 frames per reading thread."""
    pose_jump_m: float = 2.0
    """A camera step longer than this (metres) *and* than ``pose_jump_factor`` x the recent typical step is a cut."""
    pose_jump_factor: float = 8.0
    """See ``pose_jump_m``."""
    pose_jump_deg: float = 30.0
    """A camera rotation larger than this between two frames is a cut."""
    black_luma: float = 10.0
    """Frames whose mean luma (0..255) is below this are black (fades, loading screens) and dropped."""
    fade_ratio: float = 0.6
    """A frame darker than this fraction of the median luma of the previous frames is part of a fade."""
    fade_window: int = 6
    """How many previous frames the fade test looks at."""
    drop_frozen_depth: bool = True
    """Drop frames whose depth is bit-identical to the previous frame's while the RGB changes."""
    range_frames: int = 3000
    """Split captures longer than this many frames into ranges processed in parallel, with exactly
    the clips of one pass (see ``pipeline/ranges.py``); 0 = one work unit per capture.  A range
    costs the frames its worker reads before it takes over (up to ``range_sync_frames``), so
    ranges are long: a dataset of many short captures is parallel already."""
    range_sync_frames: int = 600
    """How far into its range a range's worker looks for the frame where its walk no longer
    depends on the frames before the range (a hard break: unreadable or black frame, dropped
    frames); a range without one is walked by the previous range's worker."""


@dataclass
class ClipsConfig:
    """How scenes are cut into clips."""

    lengths: list[int] = field(default_factory=lambda: [32, 16])
    """Clip lengths in frames, cut greedily longest first; each length is its own bucket."""
    max_gap: int = 1
    """Largest jump in frame index inside a clip (1 = no dropped frames allowed inside a clip)."""


@dataclass
class BucketsConfig:
    """How clips are grouped by resolution."""

    mode: str = "native"
    """``native`` (keep each clip's size, copy RGB bytes), ``resize`` or ``crop`` to the nearest-aspect target."""
    sizes: list[list[int]] = field(default_factory=list)
    """Target sizes ``[height, width]`` for ``resize`` and ``crop``."""


@dataclass
class ShardsConfig:
    """Shard size bounds."""

    max_clips: int = 256
    """Clips per shard at most."""
    max_mb: float = 1024.0
    """A shard is closed once it holds this many megabytes."""
    fsync: bool = False
    """fsync shards and resume records: survive a power loss too, not only a killed build (slower)."""
    depth_codec: str = "npz"
    """Depth members: ``npz`` (lossless deflated float16, the default; see docs/dataset-format.md)
    or ``npy`` (uncompressed float16, as the first datasets stored it)."""


@dataclass
class RunConfig:
    """Where and how the build runs."""

    executor: str = "auto"
    """``auto`` (the default: Ray when ``ray_address`` is set, else one worker process per CPU of
    this machine), ``ray`` (Ray tasks; a local Ray instance without ``ray_address``) or ``local``
    (in this process)."""
    ray_address: str | None = None
    """Join this Ray cluster (``auto`` or ``ray://host:10001``); None starts Ray locally."""
    num_cpus: int | None = None
    """CPUs to use on this machine (worker processes, or a local Ray instance's CPUs); None = all."""
    object_store_mb: int | None = None
    """Object store size for a local Ray instance; None = a quarter of the memory, at most 4 GiB."""
    scoring_actors: int = 1
    """Actors that run model scoring (each loads the models once)."""
    scoring_gpus: float = 0.0
    """GPUs per scoring actor (0 on a CPU machine; set 1 on a GPU cluster)."""
    task_retries: int = 3
    """Times Ray runs a unit again when its worker or node dies (a rerun overwrites, never duplicates)."""
    min_valid_fraction: float = 0.01
    """A depth frame with fewer valid pixels than this is unusable."""


@dataclass
class BuildConfig:
    """Everything ``dav-build`` needs besides its inputs and output."""

    split: SplitConfig = field(default_factory=SplitConfig)
    clips: ClipsConfig = field(default_factory=ClipsConfig)
    buckets: BucketsConfig = field(default_factory=BucketsConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    run: RunConfig = field(default_factory=RunConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)

    def validate(self) -> "BuildConfig":
        if not self.clips.lengths or any(int(n) < 1 for n in self.clips.lengths):
            raise ConfigError(f"clips.lengths must be positive frame counts, got {self.clips.lengths}")
        self.clips.lengths = sorted({int(n) for n in self.clips.lengths}, reverse=True)
        if self.buckets.mode not in ("native", "resize", "crop"):
            raise ConfigError(f"buckets.mode must be native, resize or crop, got {self.buckets.mode!r}")
        if self.buckets.mode != "native" and not self.buckets.sizes:
            raise ConfigError(f"buckets.mode {self.buckets.mode!r} needs buckets.sizes ([[height, width], ...])")
        for hw in self.buckets.sizes:
            if len(hw) != 2 or min(hw) < 1:
                raise ConfigError(f"buckets.sizes entries are [height, width], got {hw}")
        if self.split.detector not in ("content", "adaptive", "hash", "none"):
            raise ConfigError(f"split.detector must be content, adaptive, hash or none, got {self.split.detector!r}")
        if self.shards.depth_codec not in ("npz", "npy"):
            raise ConfigError(f"shards.depth_codec must be npz or npy, got {self.shards.depth_codec!r}")
        if self.run.executor not in ("auto", "ray", "local"):
            raise ConfigError(f"run.executor must be auto, ray or local, got {self.run.executor!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """A hash of everything that changes the output (not where it runs)."""
        d = self.to_dict()
        d.pop("run", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _merge(cls: type, data: dict[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclasses, rejecting unknown
    keys; any problem is a :class:`ConfigError`."""
    try:
        return strict_dataclass(cls, data, where, ConfigError)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from exc


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> BuildConfig:
    """Read a YAML config (or the defaults) and apply ``overrides`` (a nested dict)."""
    data: dict[str, Any] = read_yaml(path, ConfigError) if path is not None else {}
    for key, value in (overrides or {}).items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return _merge(BuildConfig, data, "").validate()
