"""Training the learned check (``dav-filter train-check``) on captures with per-frame ground truth.

The data are captures rendered by ``dav-render`` with planted defects: each capture folder holds
``defects.json`` (per defect its frames and, per frame, ``frame_wrong``: the share of pixels whose
depth is more than 5 % off the true render or whose RGB was drawn over) and ``segments.json``
(shots, fades, black frames).  A frame pair (t-1, t) inside one shot is labelled

* 1 (defective) when frame t has more than ``material`` of its pixels wrong,
* left out when frame t touches a defect that left it (almost) right (a lag under a still
  camera), or frame t-1 is defective while t is not (the pair shows the defect ending, which
  the clip containing t-1 already answers for),
* 0 (clean) otherwise.

Only pairs of the same shot are used (the build cuts clips inside shots).  Frames the reader
refuses (a wrong depth buffer with no valid pixel) leave their pairs out.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dav_builder.filters.learned import NetConfig, build_net, pair_features, reduce_frames, save, scale_K

#: A frame is defective when more than this share of its pixels is wrong (as the filter benchmark).
MATERIAL = 0.002


@dataclass
class PairSet:
    """Frames and labels of training pairs: ``rgb`` (N, h, w, 3) uint8 and ``depth`` (N, h, w)
    float16 hold frames, ``K`` (N, 3, 3) their intrinsics at that size and ``poses`` (N, 4, 4)
    camera-to-world (NaN where unknown); pair k is frames ``prev[k]`` and ``cur[k]``; ``label`` 0/1."""

    rgb: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    poses: np.ndarray
    prev: np.ndarray
    cur: np.ndarray
    label: np.ndarray
    captures: int


def frame_labels(cap_dir: Path, n: int, material: float = MATERIAL) -> np.ndarray:
    """Per frame of a capture: 1 defective, 0 clean, -1 touched by a defect but (almost) right."""
    lab = np.zeros(n, np.int8)
    path = cap_dir / "defects.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; training needs captures rendered by dav-render with defects")
    for d in json.loads(path.read_text()):
        if d["type"] == "wrong_nearfar":  # invisible to any relative check: see bench_filters
            continue
        wrong = d["params"].get("frame_wrong")
        for k, i in enumerate(range(d["first_frame"], d["last_frame"] + 1)):
            if i >= n:
                break
            if (wrong[k] if wrong else 1.0) > material:
                lab[i] = 1
            elif lab[i] == 0:
                lab[i] = -1
    return lab


def capture_dirs(roots: list[Path]) -> list[Path]:
    """Every capture folder (one holding ``capture.json`` and ``defects.json``) under ``roots``."""
    out = []
    for root in roots:
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such folder")
        out += sorted(p.parent for p in root.rglob("defects.json") if (p.parent / "capture.json").is_file())
    if not out:
        raise FileNotFoundError(f"no capture with defects.json under {', '.join(map(str, roots))} "
                                "(render some with 'dav-render --defects ...')")
    return out


def load_pairs(roots: list[Path], side: int = 128, material: float = MATERIAL, progress: bool = False) -> PairSet:
    """Frames and pair labels of every capture under ``roots`` (see the module's docs)."""
    from dav_builder.capture.base import FrameError
    from dav_builder.capture.dav import DavCapture

    dirs = capture_dirs(roots)
    rgbs, depths, Ks, poses, prev, cur, labels = [], [], [], [], [], [], []
    base = 0
    it = dirs
    if progress:
        from tqdm import tqdm

        it = tqdm(dirs, desc="reading captures", unit="capture")
    for cap_dir in it:
        cap = DavCapture(cap_dir)
        infos = [f for f in cap.frames()]
        lab = frame_labels(cap_dir, len(infos), material)
        seg_path = cap_dir / "segments.json"
        shot = np.full(len(infos), -1)
        if seg_path.is_file():
            for s in json.loads(seg_path.read_text()):
                if s["type"] == "shot":
                    shot[s["first_frame"] : s["last_frame"] + 1] = s["shot"]
        else:
            shot[:] = 0
        ok = np.zeros(len(infos), bool)
        frames_rgb, frames_depth = [], []
        cap_K = np.full((len(infos), 3, 3), np.nan)
        cap_poses = np.full((len(infos), 4, 4), np.nan)
        for i, info in enumerate(infos):
            try:
                if isinstance(info, FrameError):
                    raise info
                f = cap.read_frame(info, small_side=side)
                r, d = reduce_frames(f.rgb_small[None], f.depth[None], side)
                if info.K is not None:
                    cap_K[i] = scale_K(np.asarray(info.K)[None], (cap.height, cap.width), r.shape[1:3])[0]
                if info.cam_to_world is not None:
                    cap_poses[i] = info.cam_to_world
                ok[i] = True
            except FrameError:
                h, w = frames_rgb[-1].shape[:2] if frames_rgb else (1, 1)
                r, d = np.zeros((1, h, w, 3), np.uint8), np.zeros((1, h, w), np.float32)
            frames_rgb.append(r[0])
            frames_depth.append(d[0])
        if len({f.shape for f in frames_rgb}) != 1:  # a refused first frame: fix its placeholder size
            h, w = next(f.shape[:2] for f, good in zip(frames_rgb, ok) if good) if ok.any() else (1, 1)
            frames_rgb = [f if good else np.zeros((h, w, 3), np.uint8) for f, good in zip(frames_rgb, ok)]
            frames_depth = [f if good else np.zeros((h, w), np.float32) for f, good in zip(frames_depth, ok)]
        for t in range(1, len(infos)):
            if not (ok[t] and ok[t - 1]) or shot[t] < 0 or shot[t] != shot[t - 1]:
                continue
            if lab[t] == -1 or (lab[t] == 0 and lab[t - 1] != 0):
                continue
            prev.append(base + t - 1)
            cur.append(base + t)
            labels.append(int(lab[t]))
        rgbs.append(np.stack(frames_rgb))
        depths.append(np.stack(frames_depth).astype(np.float16))
        Ks.append(cap_K)
        poses.append(cap_poses)
        base += len(infos)
    shapes = {r.shape[1:] for r in rgbs}
    if len(shapes) != 1:
        raise ValueError(f"captures of different sizes {sorted(shapes)}: train on captures of one size")
    return PairSet(np.concatenate(rgbs), np.concatenate(depths), np.concatenate(Ks), np.concatenate(poses),
                   np.array(prev), np.array(cur),
                   np.array(labels, np.float32), len(dirs))


def _batch(data: PairSet, idx: np.ndarray, flip: np.ndarray | None = None,
           no_poses: np.ndarray | None = None) -> np.ndarray:
    """Features of pairs ``idx``; ``flip`` mirrors some left-right, ``no_poses`` leaves some
    without poses (captures without them are scored too)."""
    x = np.concatenate([pair_features(np.stack([data.rgb[p], data.rgb[c]]),
                                      np.stack([data.depth[p], data.depth[c]]).astype(np.float32),
                                      None if no_poses is not None and no_poses[k] else data.K[[p, c]],
                                      None if no_poses is not None and no_poses[k] else data.poses[[p, c]])
                        for k, (p, c) in enumerate(zip(data.prev[idx], data.cur[idx]))])
    if flip is not None and flip.any():
        x[flip] = x[flip][..., ::-1]
    return np.ascontiguousarray(x)


def train(data: PairSet, steps: int = 5000, batch: int = 32, lr: float = 3e-3, seed: int = 0,
          cfg: NetConfig | None = None, device: str = "cpu", threads: int = 1, progress: bool = False,
          no_poses: float = 0.15):
    """Trains a network on ``data``: Adam, binary cross-entropy with the defective pairs weighted up
    to balance the classes, random left-right flips, ``no_poses`` of the pairs shown without camera
    poses, cosine learning-rate decay.  Returns the
    network and its config (``info`` says what it was trained on, how long)."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = cfg or NetConfig()
    cfg.side = int(max(data.rgb.shape[1:3]))
    net = build_net(cfg).to(device)
    n_pos = float(data.label.sum())
    n_neg = float(len(data.label) - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"training needs defective and clean pairs; got {int(n_pos)} defective, {int(n_neg)} clean")
    # sample the classes equally often: each batch half defective, half clean
    pos, neg = np.flatnonzero(data.label == 1), np.flatnonzero(data.label == 0)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="training", unit="step")
    net.train()
    running = None
    for _ in range(steps):
        idx = np.concatenate([rng.choice(pos, batch // 2), rng.choice(neg, batch - batch // 2)])
        x = torch.from_numpy(_batch(data, idx, rng.random(len(idx)) < 0.5, rng.random(len(idx)) < no_poses)).to(device)
        y = torch.from_numpy(data.label[idx]).to(device)
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        lv = float(loss.detach())
        running = lv if running is None else 0.98 * running + 0.02 * lv
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}")
    if bar is not None:
        bar.close()
    net.eval()
    cfg.info = {"pairs": len(data.label), "defective_pairs": int(n_pos), "captures": data.captures,
                "steps": steps, "batch": batch, "lr": lr, "seed": seed, "no_poses": no_poses, "final_loss": running,
                "seconds": round(time.perf_counter() - t0, 1), "threads": threads, "device": device,
                "weights": int(sum(p.numel() for p in net.parameters()))}
    return net.cpu(), cfg


def train_and_save(roots: list[Path], out: Path, steps: int, batch: int = 32, lr: float = 3e-3, seed: int = 0,
                   side: int = 128, device: str = "cpu", threads: int = 1, progress: bool = False,
                   note: str = "") -> NetConfig:
    data = load_pairs(roots, side, progress=progress)
    net, cfg = train(data, steps, batch, lr, seed, device=device, threads=threads, progress=progress)
    cfg.info["data"] = [str(r) for r in roots] if not note else note
    save(net, cfg, out)
    return cfg
