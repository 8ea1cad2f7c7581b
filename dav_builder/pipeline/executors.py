"""Executors: the only place that knows about Ray.

Both executors run the same stages (:mod:`dav_builder.pipeline.stages`) and hand every
:class:`~dav_builder.pipeline.stages.Item` to a callback in the driver, which writes it.

- :func:`run_local`: one process, in order; for debugging, tests and tiny inputs.
- :func:`run_ray`: a streaming Ray Data pipeline.  Captures are split in parallel tasks (each a
  generator, so a long capture streams its clips instead of materialising them); model scoring
  runs in an actor pool whose actors load the models once; without models, the cheap
  model-free scoring runs inside the split tasks (no extra hop through the object store).
  Memory stays bounded by Ray Data's backpressure whatever the input size.
"""

from __future__ import annotations

import logging
import os
import pickle
from typing import Callable, Iterable

from dav_builder.capture.discover import CaptureRef
from dav_builder.pipeline.config import BuildConfig
from dav_builder.pipeline.stages import ClipProcessor, Item, capture_items

Sink = Callable[[Item], None]
BATCH = 4  # clips scored together


def _batched(items: Iterable[Item], processor: ClipProcessor) -> Iterable[Item]:
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


def run_local(refs: list[CaptureRef], cfg: BuildConfig, skip_ids: frozenset[str], sink: Sink) -> None:
    processor = ClipProcessor(cfg)
    processor.setup()
    for ref in refs:
        for item in _batched(capture_items(ref, cfg, skip_ids), processor):
            sink(item)


# -- Ray ----------------------------------------------------------------------------------


def _split_capture(batch, cfg: BuildConfig, skip_ids: frozenset[str], score_inline: bool):
    """Ray Data UDF (a task): one capture in, a stream of pickled items out.

    Without models the cheap model-free scoring runs here, inline, so clips cross the object
    store once.
    """
    processor = ClipProcessor(cfg) if score_inline else None
    for blob in batch["ref"]:
        ref = pickle.loads(blob)
        items = capture_items(ref, cfg, skip_ids)
        if processor is not None:
            items = _batched(items, processor)
        for item in items:
            yield {"item": [pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)]}


class _ScoreActor:
    """Ray Data actor: loads the scoring models once, then scores batches of items."""

    def __init__(self, cfg: BuildConfig):
        self.processor = ClipProcessor(cfg)
        self.processor.setup()

    def __call__(self, batch):
        items = [pickle.loads(b) for b in batch["item"]]
        out = self.processor(items)
        return {"item": [pickle.dumps(i, protocol=pickle.HIGHEST_PROTOCOL) for i in out]}


def init_ray(cfg: BuildConfig) -> None:
    """Join the configured cluster, or start a local Ray sized for this machine."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if cfg.run.ray_address:
        ray.init(address=cfg.run.ray_address, log_to_driver=True)
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


def run_ray(
    refs: list[CaptureRef],
    cfg: BuildConfig,
    skip_ids: frozenset[str],
    sink: Sink,
    uses_models: bool,
) -> None:
    import ray

    init_ray(cfg)
    ctx = ray.data.DataContext.get_current()  # (importing ray.data configures its loggers: quiet them after)
    for name in ("ray.data", "ray.data._internal.execution.streaming_executor", "ray.data._internal.progress"):
        logging.getLogger(name).setLevel(logging.ERROR)  # the driver reports progress and problems itself
    ctx.enable_progress_bars = False  # the driver shows its own bars
    ctx.print_on_execution_start = False
    ctx.execution_options.preserve_order = False
    ctx.target_max_block_size = 1 << 20  # emit clips as they are cut (a clip or two per block), so progress shows as it happens
    ds = ray.data.from_items([{"ref": pickle.dumps(r)} for r in refs], override_num_blocks=max(1, len(refs)))
    ds = ds.map_batches(
        _split_capture,
        fn_kwargs={"cfg": cfg, "skip_ids": skip_ids, "score_inline": not uses_models},
        batch_size=1,
        num_cpus=1,
    )
    if uses_models:
        ds = ds.map_batches(
            _ScoreActor,
            fn_constructor_kwargs={"cfg": cfg},
            batch_size=BATCH,
            compute=ray.data.ActorPoolStrategy(size=max(1, cfg.run.scoring_actors)),
            num_gpus=cfg.run.scoring_gpus,
            num_cpus=1,
        )
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
        for blob in batch["item"]:
            sink(pickle.loads(bytes(blob)))
