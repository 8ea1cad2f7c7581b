"""``build_dataset``: captures in, the dataset of DATASET_FORMAT.md out, resumable.

Order of work: check the configuration and the scoring models (before any data is read), find
the captures, recover the output directory from a killed run, run the stages on the captures that
are not yet complete, close the shards, write manifest and stats.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from dav_builder.capture.discover import CaptureRef, find_captures
from dav_builder.filters.stage import ScoringStage
from dav_builder.pipeline.config import BuildConfig
from dav_builder.pipeline.sink import BUILD_STATE, STATS, DatasetSink
from dav_builder.pipeline.stages import Item
from dav_builder.shards.writer import STATE_DIR, atomic_write_json

log = logging.getLogger(__name__)


class BuildError(RuntimeError):
    """The build cannot start (bad output directory, configuration mismatch...)."""


@dataclass
class BuildResult:
    dataset: Path
    stats: dict
    skipped: bool = False
    """True when the dataset was already complete and nothing was done."""


def scoring_uses_models(cfg: BuildConfig) -> bool:
    """Whether the scoring stage loads models (then it runs in an actor pool of its own)."""
    return bool(ScoringStage(cfg.scoring).uses_models())


def _check_output(out: Path, cfg: BuildConfig, inputs: list[str], overwrite: bool) -> dict | None:
    """Prepare ``out``; return the stats of a finished identical build, or None to build."""
    state = out / STATE_DIR / BUILD_STATE
    if overwrite and out.exists():
        shutil.rmtree(out)
    if out.exists() and any(out.iterdir()) and not state.exists():
        raise BuildError(f"{out}: exists and is not a dav-build output; choose an empty or new directory")
    if state.exists():
        prev = json.loads(state.read_text())
        if prev.get("config_fingerprint") != cfg.fingerprint() or prev.get("inputs") != inputs:
            raise BuildError(
                f"{out}: holds a build with other inputs or settings; rerun the same command to resume it, "
                "pass --overwrite to start again, or choose another --out"
            )
        stats_path = out / STATS
        if stats_path.exists():
            stats = json.loads(stats_path.read_text())
            if stats.get("complete"):
                return stats
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(state, {"config_fingerprint": cfg.fingerprint(), "inputs": inputs, "config": cfg.to_dict()})
    return None


def build_dataset(
    inputs: list[Path],
    out: Path,
    cfg: BuildConfig,
    overwrite: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> BuildResult:
    """Build (or resume, or confirm) the dataset at ``out`` from the captures under ``inputs``.

    One writer per output: the dataset's lock is taken first (a second build on ``out`` fails
    at once naming the first, see :mod:`.lock`).  A full disk ends the build with one
    :class:`BuildError` naming the path; a rerun after freeing space resumes it.
    """
    from dav_builder.pipeline.lock import DatasetLocked, lock_dataset
    from dav_builder.pipeline.robust import disk_full_message

    try:
        lock = lock_dataset(out, "dav-build")
    except DatasetLocked as exc:
        raise BuildError(str(exc)) from None
    with lock:
        try:
            return _build_dataset(inputs, out, cfg, overwrite, progress, say)
        except OSError as exc:
            msg = disk_full_message(exc, out)
            if msg is None:
                raise
            raise BuildError(msg) from None


def _build_dataset(
    inputs: list[Path],
    out: Path,
    cfg: BuildConfig,
    overwrite: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> BuildResult:
    """:func:`build_dataset` once the output is locked."""
    out = Path(out)
    scoring = ScoringStage(cfg.scoring)
    scoring.validate()  # a configured model that is missing fails here, before any data is read
    for line in scoring.describe():
        say(line)
    input_names = [str(Path(p).resolve()) for p in inputs]
    finished = _check_output(out, cfg, input_names, overwrite)
    if finished is not None:
        say(f"{out}: already complete ({finished['clips_kept']} clips kept); nothing to do")
        return BuildResult(out, finished, skipped=True)

    refs: list[CaptureRef] = find_captures([Path(p) for p in inputs])
    sink = DatasetSink(out, cfg)
    todo = [r for r in refs if r.capture_id not in sink.done_captures()]
    if len(todo) < len(refs):
        say(f"resuming: {len(refs) - len(todo)} of {len(refs)} captures already complete, "
            f"{len(sink.committed)} clips already in shards")
    say(f"{len(todo)} capture(s) to process with the {cfg.run.executor} executor")

    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), desc="captures", unit="capture", disable=not progress)
    clips_bar = tqdm(desc="clips", unit="clip", disable=not progress)

    frames_this_run = 0

    def receive(item: Item) -> None:
        nonlocal frames_this_run
        sink.add(item)
        if item.clip is not None:
            clips_bar.update(1)
        if item.summary is not None:
            frames_this_run += item.summary.frames_read
            bar.update(1)
            s = item.summary
            if s.error:
                log.warning(f"{s.capture}: not read: {s.error}")
            else:
                log.debug(f"{s.capture}: {s.frames_read} frames read, {len(s.clip_ids)} clips cut")

    skip = sink.done_clip_ids()
    try:
        if cfg.run.executor == "local":
            from dav_builder.pipeline.executors import run_local

            run_local(todo, cfg, skip, receive)
        else:
            from dav_builder.pipeline.executors import run_ray

            run_ray(todo, cfg, skip, receive, uses_models=scoring.uses_models())
    finally:
        sink.close()  # complete the open shards: their clips are kept for a resume
        bar.close()
        clips_bar.close()
    if sink.incomplete():
        raise BuildError(f"captures left incomplete: {sink.incomplete()[:5]}; rerun the same command to resume")
    stats = sink.finalize(input_names, time.perf_counter() - t0, frames_this_run)
    return BuildResult(out, stats)


def summary_lines(stats: dict) -> list[str]:
    """A human summary of ``stats.json``."""
    lines = [
        f"captures: {stats['captures']} ({stats['captures_failed']} failed)   frames read: {stats['frames_read']}"
        f"   in clips: {stats['frames_in_clips']}",
        f"clips: {stats['clips_cut']} cut, {stats['clips_written']} written, {stats['clips_kept']} kept",
    ]
    if stats["clips_dropped"]:
        lines.append("dropped (written, keep=false): " + ", ".join(f"{k} {v}" for k, v in stats["clips_dropped"].items()))
    if stats["clips_not_written"]:
        lines.append("not written: " + ", ".join(f"{k} {v}" for k, v in stats["clips_not_written"].items()))
    if stats["buckets"]:
        lines.append("buckets: " + ", ".join(f"{k} ({v})" for k, v in stats["buckets"].items()))
    fps = stats.get("frames_per_second_last_run")
    lines.append(f"time: {stats['wall_seconds_last_run']:.1f} s" + (f", {fps:.1f} frames/s" if fps else ""))
    return lines
