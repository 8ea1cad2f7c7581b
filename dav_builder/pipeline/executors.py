"""Executors: the only place that knows about Ray.

Both executors run the same function on each :class:`~dav_builder.pipeline.sink.WorkUnit`:
:func:`process_unit` reads and splits the unit's frames, scores the clips, writes them into the
unit's own shards on the dataset's storage, and returns small JSON messages (manifest rows,
the unit's summary) that the driver's :class:`~dav_builder.pipeline.sink.DatasetSink` collects.
No pixel passes through the driver.

- :func:`run_local`: in this process, one unit after the other (reading threads still decode
  frames in parallel), or in one worker process per CPU of this machine: the automatic choice on
  one machine without ``--ray-address`` (no Ray start-up, nothing but the small messages to
  serialise).
- :func:`run_ray`: one Ray task per unit, at most two per CPU in flight; a task lost with its node
  is retried by Ray (a unit writes the same shard names each time, so a retry overwrites, never
  duplicates).  Model scoring runs in an actor pool whose actors load the models once (GPUs
  declared per actor): a task sends its loaded clips to an actor through the object store and
  writes what comes back.  Without models, the cheap model-free scoring runs inside the task.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator

from dav_builder.capture.base import Capture
from dav_builder.clip import Clip
from dav_builder.pipeline.fetching import FetchingCapture, stage_dav_metadata
from dav_builder.pipeline.config import BuildConfig
from dav_builder.pipeline.sink import UnitWriter, WorkUnit
from dav_builder.pipeline.splitter import usable_cpus
from dav_builder.pipeline.stages import ClipProcessor, Item, capture_items
from dav_builder.storage import Store, is_url, stage_tree

log = logging.getLogger(__name__)

Receive = Callable[[bytes], None]
Processor = Callable[[list[Item]], list[Item]]
BATCH = 4  # clips scored together


class WorkerFailed(RuntimeError):
    """A unit failed on its worker even after Ray's retries."""


def _batched(items: Iterable[Item], processor: Processor) -> Iterable[Item]:
    """Run ``processor`` over groups of up to BATCH loaded clips; pass everything else through."""
    batch: list[Item] = []
    for item in items:
        if item.clip is not None and item.clip.loaded:
            batch.append(item)
            if len(batch) >= BATCH:
                yield from processor(batch)
                batch = []
        else:  # unwritable clips and summaries need no scoring
            yield item
    if batch:
        yield from processor(batch)


def _rename_paths(clip: Clip, local: str, url: str) -> None:
    """Name the capture's files by their URL, not by the worker's local copy."""
    if clip.reason and local in clip.reason:
        clip.reason = clip.reason.replace(local, url)
    if clip.errors:
        clip.errors = {k.replace(local, url): v.replace(local, url) for k, v in clip.errors.items()}


Wrap = Callable[[Capture], Capture]


def _same(cap: Capture) -> Capture:
    return cap


@contextmanager
def _staged(unit: WorkUnit) -> Iterator[tuple[WorkUnit, Callable[[Item], Item], Wrap]]:
    """A capture on an object store is copied to this worker's local disk while its unit runs; a
    range of a dav capture is fetched as it is read instead (:mod:`.fetching`)."""
    if not is_url(unit.ref.path):
        yield unit, lambda item: item, _same
        return
    tmp = tempfile.mkdtemp(prefix="dav-capture-")
    try:
        url = unit.ref.path.rstrip("/")
        dest = Path(tmp) / os.path.basename(url)
        wrap: Wrap = _same
        if unit.parts > 1 and unit.ref.reader == "dav":
            local = stage_dav_metadata(url, dest)
            wrap = partial(FetchingCapture, url=url)
        else:
            local = stage_tree(unit.ref.path, dest)

        def fix(item: Item) -> Item:
            if item.clip is not None:
                _rename_paths(item.clip, str(local), url)
            if item.summary is not None and item.summary.error:
                item.summary.error = item.summary.error.replace(str(local), url)
            return item

        yield replace(unit, ref=replace(unit.ref, path=str(local))), fix, wrap
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def unit_items(unit: WorkUnit, cfg: BuildConfig, wrap: Wrap = _same) -> Iterator[Item]:
    """The items of one unit: a whole capture, or a range of its frames (its capture opened
    through ``wrap``)."""
    if unit.parts == 1:
        return capture_items(unit.ref, cfg, unit.skip_ids)
    from dav_builder.pipeline.ranges import range_items

    return range_items(unit, cfg, wrap)


@contextmanager
def _opencv_sequential() -> Iterator[None]:
    """OpenCV's own thread pool off while a unit runs (set back after): a build already keeps every
    core busy (one worker per CPU; reading threads beside the main thread), and OpenCV's threads
    on top of that only compete for the same cores, on images small enough that handing them out
    costs more than it saves: about 0.3 to 1.5 ms less CPU per 640x352 frame measured, the same
    results (docs/benchmarks.md)."""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(0)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def process_unit(unit: WorkUnit, cfg: BuildConfig, store: Store, processor: Processor) -> list[bytes]:
    """Run one unit start to end; return its messages for the driver."""
    writer = UnitWriter(store, cfg, unit)
    try:
        with _opencv_sequential(), _staged(unit) as (local_unit, fix, wrap):
            for item in _batched((fix(i) for i in unit_items(local_unit, cfg, wrap)), processor):
                writer.add(item)
        return writer.finish()
    except BaseException:
        writer.abandon()
        raise


def run_local(units: list[WorkUnit], cfg: BuildConfig, store: Store, receive: Receive, processes: int = 1) -> None:
    """Run the units in this process, or in ``processes`` worker processes of this machine (each
    loads the scoring models once; units go to whichever process is free)."""
    import multiprocessing as mp

    if processes <= 1 or len(units) <= 1 or mp.current_process().daemon:  # a daemon may not have children
        processor = ClipProcessor(cfg)
        processor.setup()
        for unit in units:
            for msg in process_unit(unit, cfg, store, processor):
                receive(msg)
        return
    import sys
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # fork starts the workers without importing everything again; not once CUDA is initialised
    torch = sys.modules.get("torch")
    cuda_up = torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() and not cuda_up else "spawn")
    workers = min(processes, len(units))
    cfg = task_threads(cfg, min(4, processes / workers))  # like a Ray task: its share of the CPUs
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_pool_setup, initargs=(cfg, store)) as pool:
        futures = [pool.submit(_pool_unit, unit) for unit in units]
        for fut in as_completed(futures):
            for msg in fut.result():
                receive(msg)


_POOL: dict = {}


def _pool_setup(cfg: BuildConfig, store: Store) -> None:
    store._fs = None  # a forked filesystem client (its event loop, its connections) is not reused
    processor = ClipProcessor(cfg)
    processor.setup()
    _POOL.update(cfg=cfg, store=store, processor=processor)


def _pool_unit(unit: WorkUnit) -> list[bytes]:
    return process_unit(unit, _POOL["cfg"], _POOL["store"], _POOL["processor"])


def local_processes(cfg: BuildConfig) -> int:
    """Worker processes for the automatic executor on one machine: one per CPU this process may use
    (``run.num_cpus`` caps it), unless the scoring models run on a GPU (then one)."""
    if cfg.run.scoring_gpus > 0:
        return 1
    cpus = usable_cpus()
    return max(1, min(cpus, cfg.run.num_cpus or cpus))


# -- Ray ----------------------------------------------------------------------------------


class _ScoreActor:
    """Loads the scoring models once, then scores batches of items (returned with their clips)."""

    def __init__(self, cfg: BuildConfig):
        self.processor = ClipProcessor(cfg)
        self.processor.setup()

    def process(self, items: list[Item]) -> list[Item]:
        return self.processor(items)


class _ActorProcessor:
    """A task's processor that hands each batch to one of the scoring actors."""

    def __init__(self, actor):
        self.actor = actor

    def __call__(self, items: list[Item]) -> list[Item]:
        import ray

        return ray.get(self.actor.process.remote(items))


def _ray_unit(unit: WorkUnit, cfg: BuildConfig, store: Store, actor) -> tuple[str, list[bytes]]:
    import ray

    ctx = ray.get_runtime_context()
    cfg = task_threads(cfg, ctx.get_assigned_resources().get("CPU", 1.0))
    processor = ClipProcessor(cfg) if actor is None else _ActorProcessor(actor)
    return ctx.get_node_id(), process_unit(unit, cfg, store, processor)


def task_threads(cfg: BuildConfig, cpus: float) -> BuildConfig:
    """A Ray task (or a worker process) reads with as many threads as the CPUs it was given (unless
    ``split.read_threads`` is set): there is one task or worker per CPU, so extra reading threads
    per worker only compete with the other workers for the same cores (measured:
    docs/benchmarks.md)."""
    if cfg.split.read_threads > 0:
        return cfg
    return replace(cfg, split=replace(cfg.split, read_threads=max(1, int(round(cpus)))))


# The Ray instance this process started, and the object-store settings its workers inherited.
_STARTED: dict[str, object] = {}


def init_ray(cfg: BuildConfig) -> None:
    """Join the configured cluster, or start a local Ray sized for this machine."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if cfg.run.ray_address:
        ray.init(address=cfg.run.ray_address, log_to_driver=True, configure_logging=False)
        return
    num_cpus = cfg.run.num_cpus or os.cpu_count() or 1
    store = cfg.run.object_store_mb
    if store is None:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            total = 8 << 30
        store_bytes = min(total // 4, 4 << 30)
    else:
        store_bytes = int(store) << 20
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage-stats module in the minimal dashboard
    from dav_builder.pipeline.ray_reaper import start as watch_ray_processes

    watch_ray_processes()  # Ray's agents would outlive a kill -9 of this driver: a watcher stops them
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        object_store_memory=store_bytes,
        log_to_driver=True,
        configure_logging=False,
    )
    _STARTED.update(gcs=ray.get_runtime_context().gcs_address, env=_env_vars())


def _env_vars() -> dict[str, str]:
    """The object store's settings (endpoint, credentials, region) in this process's environment."""
    keep = ("AWS_", "GOOGLE_", "GCS_", "FSSPEC_", "AZURE_")
    return {k: v for k, v in os.environ.items() if k.startswith(keep)}


def task_runtime_env() -> dict | None:
    """The object store's settings travel to every worker as a runtime environment, unless the
    workers already have them: a Ray instance this process started inherited its environment.
    A runtime environment is not free: Ray's prestarted workers cannot take the task, and one
    worker per CPU is started through the runtime-environment agent instead, about a second of a
    10-second build on two cores (docs/benchmarks.md)."""
    import ray

    env = _env_vars()
    inherited = (_STARTED.get("gcs") == ray.get_runtime_context().gcs_address and _STARTED.get("env") == env)
    return {"env_vars": env} if env and not inherited else None


def run_ray(units: list[WorkUnit], cfg: BuildConfig, store: Store, receive: Receive, uses_models: bool) -> dict:
    """Run the units as Ray tasks; return what the stats record about the run (nodes, units per node)."""
    import ray

    t_init = time.perf_counter()
    init_ray(cfg)
    t_run = time.perf_counter()
    cpu0 = time.process_time()  # the driver's CPU from here on: what grows with the data
    runtime_env = task_runtime_env()
    remote_unit = ray.remote(_ray_unit).options(
        num_cpus=1, max_retries=cfg.run.task_retries, retry_exceptions=False,
        scheduling_strategy="SPREAD",  # units over every node, not queued on the driver's node first
        runtime_env=runtime_env,
    )
    actors: list = []
    if uses_models:
        actor_cls = ray.remote(_ScoreActor).options(num_cpus=1, num_gpus=cfg.run.scoring_gpus, max_restarts=2,
                                                    max_task_retries=2)
        actors = [actor_cls.remote(cfg) for _ in range(max(1, cfg.run.scoring_actors))]
    cfg_ref, store_ref = ray.put(cfg), ray.put(store)
    in_flight_max = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    pending = list(reversed(units))
    running: dict = {}
    n = 0
    per_node: dict[str, int] = {}
    while pending or running:
        while pending and len(running) < in_flight_max:
            unit = pending.pop()
            actor = actors[n % len(actors)] if actors else None
            n += 1
            running[remote_unit.remote(unit, cfg_ref, store_ref, actor)] = unit
        done, _ = ray.wait(list(running), num_returns=1)
        for ref in done:
            unit = running.pop(ref)
            try:
                node, messages = ray.get(ref)
            except ray.exceptions.RayError as exc:
                raise WorkerFailed(f"{unit.ref.capture_id}: the worker failed ({type(exc).__name__}); "
                                   f"the shards it completed are kept: rerun the same command to resume") from exc
            per_node[node] = per_node.get(node, 0) + 1
            for msg in messages:
                receive(msg)
    alive = [nd for nd in ray.nodes() if nd.get("Alive")]
    return {"ray_nodes": len(alive), "units_per_node": sorted(per_node.values(), reverse=True),
            "driver_cpu_seconds_running": round(time.process_time() - cpu0, 3),
            "ray_start_seconds": round(t_run - t_init, 3), "seconds_after_ray_start": round(time.perf_counter() - t_run, 3)}


def describe_executor(cfg: BuildConfig) -> tuple[str, str]:
    """``(executor, why)``: the executor that runs (``auto`` resolved) and the reason."""
    if cfg.run.executor == "local":
        return "local", "asked for (--local)"
    if cfg.run.executor == "ray":
        where = f"cluster {cfg.run.ray_address}" if cfg.run.ray_address else "a local Ray instance"
        return "ray", f"asked for ({where})"
    if cfg.run.ray_address:
        return "ray", f"cluster {cfg.run.ray_address}"
    n = local_processes(cfg)
    return "processes", (f"one machine and no --ray-address: {n} worker process{'es' if n > 1 else ''} "
                         "here, no Ray start-up")


def driver_cpu_seconds() -> float:
    return time.process_time()
