"""``build_dataset``: captures in, the dataset of DATASET_FORMAT.md out, resumable.

Order of work: check the configuration and the scoring models (before any data is read), find
the captures, recover the output directory from a killed run, run the stages on the captures that
are not yet complete, close the shards, write manifest and stats.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from dav_builder.capture.discover import CaptureRef, find_captures
from dav_builder.filters.stage import ScoringStage
from dav_builder.pipeline.config import BuildConfig
from dav_builder.pipeline.executors import WorkerFailed, describe_executor, local_processes, run_local, run_ray
from dav_builder.pipeline.sink import BUILD_STATE, STATS, DatasetSink
from dav_builder.shards.writer import STATE_DIR
from dav_builder.storage import Store, is_url, open_store, stage_tree

log = logging.getLogger(__name__)


class BuildError(RuntimeError):
    """The build cannot start (bad output directory, configuration mismatch...)."""


@dataclass
class BuildResult:
    dataset: Path | str
    """The dataset's local path, or its URL."""
    stats: dict
    skipped: bool = False
    """True when the dataset was already complete and nothing was done."""


def scoring_uses_models(cfg: BuildConfig) -> bool:
    """Whether the scoring stage loads models (then it runs in an actor pool of its own)."""
    return bool(ScoringStage(cfg.scoring).uses_models())


def _check_output(store: Store, cfg: BuildConfig, inputs: list[str], overwrite: bool) -> dict | None:
    """Prepare the dataset location; return the stats of a finished identical build, or None to build."""
    state = f"{STATE_DIR}/{BUILD_STATE}"
    if overwrite and not store.is_empty():
        store.rm_tree()
    has_state = store.exists(state)
    if not has_state and not store.is_empty():
        raise BuildError(f"{store.display()}: exists and is not a dav-build output; choose an empty or new location")
    if has_state:
        prev = store.read_json(state)
        if prev.get("config_fingerprint") != cfg.fingerprint() or prev.get("inputs") != inputs:
            raise BuildError(
                f"{store.display()}: holds a build with other inputs or settings; rerun the same command to resume "
                "it, pass --overwrite to start again, or choose another --out"
            )
        if store.exists(STATS):
            stats = store.read_json(STATS)
            if stats.get("complete"):
                return stats
    store.makedirs()
    store.write_json(state, {"config_fingerprint": cfg.fingerprint(), "inputs": inputs, "config": cfg.to_dict()},
                     fsync=True)
    return None


def input_name(path: str | Path) -> str:
    """How an input is recorded: an absolute path, or its URL."""
    text = str(path)
    if is_url(text):
        return Store(text).url
    return str(Path(text.removeprefix("file://")).resolve())


def find_inputs(inputs: list[str], scratch: Path, local_paths: dict[str, str] | None = None) -> list[CaptureRef]:
    """The captures under local paths and URLs.  Under a URL only the small metadata files are
    downloaded (into ``scratch``) to recognise the layouts; a worker copies a capture's frames when
    it processes it."""
    roots: list[Path] = []
    remote: dict[Path, str] = {}
    for i, raw in enumerate(inputs):
        if not is_url(raw):
            roots.append(Path(str(raw).removeprefix("file://")))
            continue
        store = open_store(raw, "input", must_exist=True)
        local = stage_tree(store.url, scratch / f"{i}" / Path(store.root).name, metadata_only=True)
        remote[local.resolve()] = store.url
        roots.append(local)
    refs = find_captures(roots)
    out = []
    for ref in refs:
        path = Path(ref.path).resolve()
        for local, url in remote.items():
            if path == local or local in path.parents:
                rel = path.relative_to(local).as_posix()
                if local_paths is not None:
                    local_paths[ref.capture_id] = ref.path
                ref = replace(ref, path=f"{url}/{rel}" if rel != "." else url)
                break
        out.append(ref)
    return out


def build_dataset(
    inputs: list,
    out,
    cfg: BuildConfig,
    overwrite: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> BuildResult:
    """Build (or resume, or confirm) the dataset at ``out`` (a path or URL) from the captures
    under ``inputs`` (paths or URLs).

    One writer per output: the dataset's lock is taken first (a second build on ``out`` fails
    at once naming the first, see :mod:`.lock`; object-store URLs have no lock).  A full disk
    ends the build with one :class:`BuildError` naming the path; a rerun after freeing space
    resumes it.
    """
    from dav_builder.pipeline.lock import sole_writer

    with sole_writer(out, "dav-build", BuildError):
        return _build_dataset(inputs, out, cfg, overwrite, progress, say)


def _build_dataset(
    inputs: list,
    out,
    cfg: BuildConfig,
    overwrite: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> BuildResult:
    """:func:`build_dataset` once the output is locked."""
    cpu0 = time.process_time()
    scoring = ScoringStage(cfg.scoring)
    scoring.validate()  # a configured model that is missing fails here, before any data is read
    store = open_store(str(out), "--out")  # an unservable scheme or a missing bucket fails here too
    for raw in inputs:
        if is_url(str(raw)):
            open_store(str(raw), "input", must_exist=True)
    for line in scoring.describe():
        say(line)
    input_names = [input_name(p) for p in inputs]
    finished = _check_output(store, cfg, input_names, overwrite)
    if finished is not None:
        say(f"{store.display()}: already complete ({finished['clips_kept']} clips kept); nothing to do")
        return BuildResult(_result_path(store), finished, skipped=True)

    sink = DatasetSink(store, cfg)
    with tempfile.TemporaryDirectory(prefix="dav-find-") as scratch:
        local_paths: dict[str, str] = {}
        refs = find_inputs([str(p) for p in inputs], Path(scratch), local_paths)
        units = sink.plan(refs, ranges_planner(cfg, local_paths))
    todo = len({u.ref.capture_id for u in units})
    if todo < len(refs):
        say(f"resuming: {len(refs) - todo} of {len(refs)} captures already complete, "
            f"{len(sink.committed)} clips already in shards")
    executor, why = describe_executor(cfg)
    say(f"{todo} capture(s) to process in {len(units)} work unit(s), executor: {executor} ({why})")

    t0 = time.perf_counter()
    bar = tqdm(total=len(units), desc="units", unit="unit", disable=not progress)
    clips_bar = tqdm(desc="clips", unit="clip", disable=not progress)
    frames_this_run = 0

    def receive(blob: bytes) -> None:
        nonlocal frames_this_run
        msg = sink.receive(blob)
        if "shard" in msg:
            clips_bar.update(len(msg["shard"]["rows"]))
        else:
            rec = msg["unit"]["record"]
            clips_bar.update(len(rec["rows"]))
            frames_this_run += rec["summary"]["frames_read"]
            bar.update(1)
            s = rec["summary"]
            if s["error"]:
                log.warning(f"{s['capture']}: not read: {s['error']}")
            else:
                log.debug(f"{s['capture']}: {s['frames_read']} frames read, {len(s['clip_ids'])} clips cut")

    run_info: dict = {}
    try:
        if executor == "local":
            run_local(units, cfg, store, receive)
        elif executor == "processes":
            run_local(units, cfg, store, receive, processes=local_processes(cfg))
        else:
            run_info = run_ray(units, cfg, store, receive, uses_models=scoring.uses_models())
    except WorkerFailed as exc:
        raise BuildError(str(exc)) from exc.__cause__
    finally:
        bar.close()
        clips_bar.close()
    missing = [u.ref.capture_id for u in units if u.key not in sink.unit_records]
    if missing:
        raise BuildError(f"captures left incomplete: {missing[:5]}; rerun the same command to resume")
    extra = {"executor": executor, "driver_cpu_seconds": round(time.process_time() - cpu0, 3), **run_info}
    stats = sink.finalize(input_names, time.perf_counter() - t0, frames_this_run, extra)
    return BuildResult(_result_path(store), stats)


def _result_path(store: Store):
    return store.local_path() if store.local else store.url


def ranges_planner(cfg: BuildConfig, local_paths: dict[str, str]):
    """``ref -> (range starts, frames)``: with ``split.range_frames``, a long capture becomes
    several units (see :mod:`.ranges`); its frames are counted from its metadata (``local_paths``:
    where each capture's metadata can be read here), only for captures that may be longer than a
    range (a dav capture's lines of ``frames.jsonl`` tell: counting exactly costs about 80 us per
    frame on the driver)."""
    from dav_builder.capture.discover import open_capture
    from dav_builder.pipeline.ranges import count_frames, plan_ranges

    def ranges_of(ref: CaptureRef):
        if cfg.split.range_frames <= 0:
            return (0,), 0
        try:
            cap = open_capture(replace(ref, path=local_paths.get(ref.capture_id, ref.path)))
            if not cap.concurrent_reads:
                return (0,), 0  # a video decodes in order: a later range's worker would decode all before it
            bound = cap.frame_count_bound()
            if bound is not None and bound <= cfg.split.range_frames:
                return (0,), 0  # one range: not worth parsing its metadata here to count exactly
            total = count_frames(cap)
        except Exception:  # noqa: BLE001 - a capture that fails here is one unit, whose worker reports it
            return (0,), 0
        ranges = plan_ranges(total, cfg.split.range_frames)
        return tuple(s for s, _ in ranges), total

    return ranges_of


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
