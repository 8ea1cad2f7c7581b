"""The training loop of ``dav-train`` (video depth model, or the keyframe interpolation model).

One optimizer step = ``grad_accum`` micro-batches, each from one bucket (video packing, no
padding).  Micro-batch ``i`` and its flow-matching noise are functions of (seed, rank, i) only, so
a resumed run repeats exactly the losses an uninterrupted run logs (on CPU; CUDA kernels may differ
in the last bits).  Multi-GPU: launch with ``torchrun --nproc-per-node N -m dav_builder.model.cli``
(or ``torchrun $(which dav-train)``); at every micro-batch all ranks draw the same bucket, each its
own batch of it (:mod:`.sampler`), and noise, noise levels and frame dropout are salted by the rank,
so N ranks make N independent draws; the UNet is wrapped in DistributedDataParallel.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import yaml

from dav_builder.model.checkpoint import EMA, latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from dav_builder.model.config import RunConfig
from dav_builder.model.data import MicroBatches, TrainBatch, kept_clips, loader, split_train_val
from dav_builder.model.sampler import BucketBatchPlan
from dav_builder.model.video_depth import DepthAnyVideo

METRICS = "metrics.jsonl"
CONFIG = "config.yaml"
FINAL = "final"


class TrainError(RuntimeError):
    """The run cannot start or continue (the message says why)."""


@dataclass
class TrainResult:
    run: Path
    step: int
    final: Path | None
    losses: list[float]
    val_loss: float | None
    skipped: bool = False


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_from_env() -> Dist:
    """torchrun's RANK / WORLD_SIZE / LOCAL_RANK, initialising the process group when world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    d = Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return d


def pick_device(dist: Dist) -> torch.device:
    if torch.cuda.is_available():
        torch.cuda.set_device(dist.local_rank)
        return torch.device("cuda", dist.local_rank)
    return torch.device("cpu")


def precision(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for float32."""
    if device.type != "cuda" or mode == "no":
        return None
    if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    if mode in ("fp16", "auto"):
        return torch.float16
    raise TrainError(f"train.mixed_precision must be auto, bf16, fp16 or no, got {mode!r}")


def lr_lambda(cfg) -> Callable[[int], float]:
    def f(step: int) -> float:
        if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "cosine":
            span = max(1, cfg.max_steps - cfg.warmup_steps)
            p = min(1.0, (step - cfg.warmup_steps) / span)
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))
        return 1.0

    return f


def build_model(cfg: RunConfig) -> DepthAnyVideo:
    """The model to train: a fresh (or SVD-initialised) video model, a video model from ``train.init_from``
    (a run, an export or the released folder), or the interpolator from ``train.init_from``."""
    from dav_builder.model.predictor import resolve_model_dir

    if cfg.model.task == "interp":
        from dav_builder.model.interp import DepthInterpolator

        root = resolve_model_dir(cfg.train.init_from)
        if (root / "unet_interp" / "config.json").is_file():
            model = DepthInterpolator.from_pretrained(root, subfolder="unet_interp")
        else:
            model = DepthInterpolator.from_video_model(DepthAnyVideo.from_pretrained(root))
        model.config.window = cfg.model.window
        return model
    if cfg.train.init_from:
        model = DepthAnyVideo.from_pretrained(resolve_model_dir(cfg.train.init_from))
        model.config.window = cfg.model.window
        return model
    return DepthAnyVideo.build(cfg.model)


def noise_generator(seed: int, index: int, salt: int = 0, rank: int = 0) -> torch.Generator:
    """The generator of micro-batch ``index``'s noise and noise levels on ``rank`` (``salt`` 1: validation)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + index * 7919 + salt + rank * 104_729) % (2**63))


def batch_sizes_for(clips, tc, sample_frames: int, multiple: int) -> dict[str, int]:
    """Per bucket: ``train.batch_sizes``, else from ``train.frame_pixel_budget`` (when set), else the default."""
    from dav_builder.model.data import fit_size
    from dav_builder.model.sampler import budget_batch_sizes

    sizes: dict[str, int] = {}
    if tc.frame_pixel_budget > 0:
        sizes = budget_batch_sizes(
            clips, tc.frame_pixel_budget,
            frames_of=lambda n: min(n, sample_frames) if sample_frames > 0 else n,
            size_of=lambda h, w: fit_size(h, w, tc.scale, multiple)[2:])
    sizes.update(tc.batch_sizes)
    return sizes


def loss_of(model: torch.nn.Module, batch: TrainBatch, device: torch.device, interp: bool,
            generator: torch.Generator) -> torch.Tensor:
    rgb, depth, pos = batch.rgb.to(device), batch.depth.to(device), batch.frame_indices.to(device)
    if interp:
        mask = torch.zeros(pos.shape, dtype=torch.bool, device=device)
        mask[:, 0] = mask[:, -1] = True  # first and last frame of the window are the keyframes
        return model(rgb, depth, pos, mask, generator=generator)
    return model(rgb, depth, pos, generator=generator)


def _trainable_state(model: DepthAnyVideo) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.unet.named_parameters() if p.requires_grad}


def _restore_metrics(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint being resumed (they will be logged again)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue  # a line cut by the crash
    path.write_text("".join(k + "\n" for k in keep))


def export_final(model: DepthAnyVideo, ema: EMA | None, run: Path, info: dict) -> Path:
    """``RUN/final``: the model in diffusers format, with the EMA weights when there is an EMA."""
    final, tmp = run / FINAL, run / f".{FINAL}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if ema is not None:
        ema.swap()
    try:
        model.save_pretrained(tmp)
    finally:
        if ema is not None:
            ema.swap()
    (tmp / "train_info.json").write_text(json.dumps(info, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def train(dataset: Path, run: Path, cfg: RunConfig, resume: bool = False, progress: bool = True,
          echo: Callable[[str], None] = print) -> TrainResult:
    from tqdm import tqdm

    dataset, run = Path(dataset), Path(run)
    tc = cfg.train
    dist = dist_from_env()
    device = pick_device(dist)
    ckpt = latest_checkpoint(run)
    if ckpt is not None and not resume:
        raise TrainError(f"{run} already holds a run (checkpoint {ckpt.name}); pass --resume to continue it "
                         "or choose another --out")
    state = load_checkpoint(ckpt) if ckpt is not None else None
    if state is not None and "velocity" not in state.get("config", {}).get("model", {"velocity": None}):
        raise TrainError(f"{ckpt}: written by a version that predicted x - noise; this version trains noise - x "
                         f"(docs/training.md); start a new run with train.init_from: {run / FINAL} (converted on load)")
    start = int(state["step"]) if state else 0
    if start >= tc.max_steps and (run / FINAL).is_dir():
        echo(f"{run}: already trained to step {start} (max_steps {tc.max_steps}); nothing to do")
        return TrainResult(run, start, run / FINAL, [], None, skipped=True)

    clips = kept_clips(dataset)
    train_clips, val_clips = split_train_val(clips, tc.val_fraction)
    if not train_clips:
        raise TrainError(f"{dataset}: no clips left for training after holding out validation clips")

    torch.manual_seed(tc.seed)
    model = build_model(cfg).to(device)
    if state is not None:
        missing = {n for n, p in model.unet.named_parameters() if p.requires_grad} - set(state["unet"])
        if missing:
            raise TrainError(f"{ckpt}: checkpoint does not match the model (missing {sorted(missing)[:3]}...)")
        model.unet.load_state_dict(state["unet"], strict=False)
        if "frozen" in state:
            model.load_state_dict(state["frozen"], strict=False)
    if tc.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    params = model.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=tc.lr, betas=tuple(tc.betas), weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(tc))
    amp = precision(tc.mixed_precision, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp is torch.float16)
    ema = EMA(params, tc.ema_decay) if tc.ema_decay > 0 else None
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema"):
            ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
    net: torch.nn.Module = model
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    interp = cfg.model.task == "interp"
    multiple = model.spatial_multiple
    # the interpolator trains on windows of consecutive frames, the stride it is used at
    sample_frames = cfg.model.window if interp else tc.sample_frames
    batch_sizes = batch_sizes_for(train_clips + val_clips, tc, sample_frames, multiple)
    plan = BucketBatchPlan(train_clips, batch_sizes, tc.batch_size, tc.seed, dist.rank, dist.world)
    micro = MicroBatches(dataset, plan, sample_frames, tc.max_frame_stride, tc.scale, multiple, tc.seed,
                         tc.max_steps * tc.grad_accum, rank=dist.rank, contiguous=interp)
    val_batches: list[TrainBatch] = []
    if val_clips and tc.val_batches > 0:
        vplan = BucketBatchPlan(val_clips, batch_sizes, tc.batch_size, tc.seed + 1)
        vset = MicroBatches(dataset, vplan, sample_frames, tc.max_frame_stride, tc.scale, multiple,
                            tc.seed + 1, tc.val_batches, contiguous=interp)
        val_batches = [vset[i] for i in range(tc.val_batches)]

    if dist.main:
        run.mkdir(parents=True, exist_ok=True)
        (run / CONFIG).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        _restore_metrics(run / METRICS, start)
        n_params = sum(p.numel() for p in params)
        echo(f"dav-train: {len(train_clips)} training clips, {len(val_clips)} validation clips, "
             f"{len(plan.by_bucket)} bucket(s); {n_params / 1e6:.2f} M trainable parameters on {device}"
             + (f" x {dist.world} ranks" if dist.world > 1 else "")
             + (f"; resuming at step {start}" if start else ""))

    def validate() -> float | None:
        if not val_batches:
            return None
        model.eval()
        losses = []
        with torch.no_grad(), _autocast(device, amp):
            for vb in val_batches:
                losses.append(float(loss_of(model, vb, device, interp, noise_generator(tc.seed, vb.index, 1))))
        model.train()
        return sum(losses) / len(losses)

    heldout = []
    if dist.main and tc.eval_clips > 0 and val_clips and cfg.model.task == "video":
        from dav_builder.evaluation.heldout import load_heldout

        heldout = load_heldout(dataset, val_clips, tc.eval_clips, tc.eval_frames)
    log = None
    if dist.main:
        from dav_builder.evaluation.trainlog import TrainLogger

        log = TrainLogger(run, start, tc.tensorboard, tc.wandb_project, cfg.to_dict(), echo)
    losses: list[float] = []
    val_loss = None
    model.train()
    model.vae.eval()
    bar = tqdm(total=tc.max_steps, initial=start, desc="train", unit="step", disable=not (progress and dist.main),
               dynamic_ncols=True)
    batches = iter(loader(micro, start * tc.grad_accum, tc.num_workers))
    step = start
    try:
        while step < tc.max_steps:
            t0 = time.perf_counter()
            data_s, step_loss, frames = 0.0, 0.0, 0
            for a in range(tc.grad_accum):
                d0 = time.perf_counter()
                batch = next(batches)
                data_s += time.perf_counter() - d0
                sync = a == tc.grad_accum - 1 or dist.world == 1
                ctx = contextlib.nullcontext() if sync else net.no_sync()
                with ctx, _autocast(device, amp):
                    loss = loss_of(net, batch, device, interp, noise_generator(tc.seed, batch.index, rank=dist.rank))
                scaler.scale(loss / tc.grad_accum).backward()
                step_loss += float(loss.detach()) / tc.grad_accum
                frames += batch.rgb.shape[0] * batch.rgb.shape[1]
            sigma = [round(float(model.last_sigma[0]), 6)]  # the last micro-batch's first noise level
            if dist.world > 1:  # log the mean loss over ranks, and every rank's noise level
                t_loss = torch.tensor([step_loss], device=device)
                torch.distributed.all_reduce(t_loss)
                step_loss = float(t_loss) / dist.world
                gathered = [torch.zeros(1, device=device) for _ in range(dist.world)]
                torch.distributed.all_gather(gathered, model.last_sigma[:1].float().to(device))
                sigma = [round(float(g), 6) for g in gathered]
            scaler.unscale_(opt)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.max_grad_norm if tc.max_grad_norm > 0 else float("inf"))
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            lr = sched.get_last_lr()[0]
            sched.step()
            if ema is not None:
                ema.update()
            step += 1
            losses.append(step_loss)
            elapsed = time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}", bucket=batch.bucket)
            validated = bool(tc.val_every and step % tc.val_every == 0) or step == tc.max_steps
            if validated:
                val_loss = validate()
            evaluated = {}
            if heldout and ((step % tc.eval_every == 0 or step == tc.max_steps) if tc.eval_every else validated):
                evaluated = _evaluate_heldout(model, ema, heldout, device, tc.eval_steps)
                model.train()
                model.vae.eval()
            if log is not None and (step % tc.log_every == 0 or validated or evaluated):
                rec = {"step": step, "loss": round(step_loss, 7), "lr": lr, "grad_norm": round(float(grad_norm), 6),
                       "bucket": batch.bucket, "frames": frames, "sigma": sigma, "data_s": round(data_s, 4),
                       "step_s": round(elapsed, 4)}
                if validated and val_loss is not None:
                    rec["val_loss"] = round(val_loss, 7)
                rec.update(evaluated)
                log.log(rec)
            if step % tc.checkpoint_every == 0 or step == tc.max_steps:
                if dist.main:
                    ck = {"step": step, "unet": _trainable_state(model), "optimizer": opt.state_dict(),
                          "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                          "ema": ema.state_dict() if ema is not None else None, "rng": rng_state(),
                          "config": cfg.to_dict(), "world_size": dist.world}
                    if not cfg.model.pretrained and not tc.init_from and cfg.model.task == "video":
                        ck["frozen"] = {k: v.cpu() for k, v in model.state_dict().items() if not k.startswith("unet.")
                                        or k.startswith("unet.add_embedding.")}
                    save_checkpoint(run, step, ck, tc.keep_checkpoints)
                if dist.world > 1:
                    torch.distributed.barrier()
    finally:
        bar.close()
        if log is not None:
            log.close()
    final = None
    if dist.main:
        final = export_final(model, ema, run, {"step": step, "dataset": str(dataset), "task": cfg.model.task})
        echo(f"dav-train: step {step}, last loss {losses[-1] if losses else float('nan'):.4f}"
             + (f", validation loss {val_loss:.4f}" if val_loss is not None else "") + f"; model in {final}")
    if dist.world > 1:
        torch.distributed.barrier()
    return TrainResult(run, step, final, losses, val_loss)


def _evaluate_heldout(model: DepthAnyVideo, ema: EMA | None, clips: list, device: torch.device, steps: int) -> dict:
    """AbsRel, delta1, TAE on the held-out clips, with the EMA weights the export will have."""
    from dav_builder.evaluation.heldout import evaluate_heldout
    from dav_builder.model.predictor import VideoDepthPredictor

    if ema is not None:
        ema.swap()
    try:
        return evaluate_heldout(VideoDepthPredictor(model, str(device), steps=steps), clips)
    finally:
        if ema is not None:
            ema.swap()


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def run_config_from(run: Path) -> dict | None:
    """The resolved config a run was started with (for --resume without --config)."""
    p = Path(run) / CONFIG
    return yaml.safe_load(p.read_text()) if p.is_file() else None


