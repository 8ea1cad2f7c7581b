"""The scoring stage of dav-build, and the keep/drop decision from stored scores.

Scores (all stored in the manifest and each clip's json, kept or dropped):

==================== ============================================================ ==========
``depth_score``      delta1 of the depth model's prediction on ``sample_frames``    higher is
                     uniformly sampled frames, after least-squares scale and shift   better
                     alignment in disparity
``semantic_score``   median CLIP cosine similarity of colour-mapped captured and    higher is
                     colour-mapped (aligned) predicted disparity                     better
``edge_misalignment`` see :mod:`dav_builder.filters.checks`                          lower
``edge_parallax``    see :mod:`dav_builder.filters.parallax`                         lower
``depth_lag``                                                                         lower
``frozen_depth``                                                                      lower
``static_overlay``                                                                    lower
``pose_misfit``      (null without camera poses)                                     lower
``depth_jump``       (null without camera poses)                                     lower
``motion_mismatch``  (null without camera poses)                                     lower
``unexplained_change`` (null without camera poses)                                   lower
``depthless_content`` (null without camera poses)                                    lower
``learned_defect``   see :mod:`dav_builder.filters.learned` (null when off)          lower
==================== ============================================================ ==========

The paper's rule: drop a clip when *both* the depth score and the semantic score fall below
their thresholds.  With only one of the two configured, that one decides alone.  Each model-free
check drops a clip whose score exceeds its threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dav_builder.capture.imageio import GREY_WEIGHTS, decode_levels, decode_rgb_small
from dav_builder.clip import Clip
from dav_builder.filters import align, checks, parallax
from dav_builder.filters.config import ScoringConfig
from dav_builder.filters.models import (
    ClipEmbedder,
    ModelUnavailableError,
    check_clip,
    check_depth_model,
    colorize,
    load_depth_model,
)


@dataclass
class _PairFrames:
    """Grey frames t-2, t-1 and t (float32, n x h x w; t-2 and t-1 clamped at the clip's first
    frame), and at the same size depth t-1 and t area-averaged (smooth, for change maps) and depth
    t nearest-sampled (sharp boundaries, for edge tests)."""

    grey_before: np.ndarray
    grey_prev: np.ndarray
    grey: np.ndarray
    depth_area_prev: np.ndarray
    depth_area: np.ndarray
    depth_nearest: np.ndarray


class _FineFrames:
    """A clip's RGB frames at up to ``side`` pixels (uint8 h x w x 3) by index: kept from reading
    (no second decode), or decoded when the clip has none, each frame once."""

    def __init__(self, clip: Clip, side: int):
        self.clip, self.side = clip, side
        self.kept = clip.rgb_fine is not None and len(clip.rgb_fine) == clip.num_frames
        self.decoded: dict[int, np.ndarray] = {}

    def __getitem__(self, i: int) -> np.ndarray:
        if self.kept:
            return self.clip.rgb_fine[i]  # type: ignore[index]
        if i not in self.decoded:
            _, rgb = decode_levels(self.clip.rgb[i], f"{self.clip.clip_id}#{i}", 0, self.side)
            assert rgb is not None
            self.decoded[i] = rgb
        return self.decoded[i]


#: The hand-made checks (no weights).
MODEL_FREE = ("edge_misalignment", "edge_parallax", "depth_lag", "frozen_depth", "static_overlay", "pose_misfit", "depth_jump",
              "motion_mismatch", "unexplained_change", "depthless_content")
CHECKS = MODEL_FREE + ("learned_defect",)
SCORE_NAMES = ("depth_score", "semantic_score") + CHECKS

__all__ = ["ScoringStage", "decide", "failures", "ModelUnavailableError", "SCORE_NAMES"]


def failures(scores: dict[str, float | None], cfg: ScoringConfig) -> list[str]:
    """Every check or rule the stored scores fail, in a fixed order (the model-free checks as in
    :data:`CHECKS`, then the paper's rule); empty when the clip is kept."""
    out = []
    for name in CHECKS:
        check = getattr(cfg, name)
        value = scores.get(name)
        if check.enabled and value is not None and not np.isnan(value) and value > check.threshold:
            out.append(name)
    ds, ss = scores.get("depth_score"), scores.get("semantic_score")
    ds = None if ds is None or np.isnan(ds) else ds
    ss = None if ss is None or np.isnan(ss) else ss
    low_d = ds is not None and ds < cfg.depth.threshold
    low_s = ss is not None and ss < cfg.clip.threshold
    if ds is not None and ss is not None:
        if low_d and low_s:
            out.append("low_depth_and_semantic")
    elif low_d:
        out.append("low_depth_score")
    elif low_s:
        out.append("low_semantic_score")
    return out


def decide(scores: dict[str, float | None], cfg: ScoringConfig) -> tuple[bool, str | None]:
    """Keep or drop from stored scores alone (so thresholds can change without rescoring); the
    reason is the first of :func:`failures`."""
    failed = failures(scores, cfg)
    return (False, failed[0]) if failed else (True, None)


class ScoringStage:
    """Scores clips; cheap to construct and pickle, models loaded in :meth:`setup`."""

    def __init__(self, cfg: ScoringConfig):
        self.cfg = cfg
        self._depth_model = None
        self._clip = None
        self._learned = None
        self._ready = False

    def uses_models(self) -> bool:
        return self.cfg.depth.path is not None or self.cfg.clip.model is not None

    def score_names(self) -> tuple[str, ...]:
        return SCORE_NAMES

    def validate(self) -> None:
        """Fail now, before any data is read, when a configured model is missing."""
        if self.cfg.depth.path is not None:
            check_depth_model(self.cfg.depth.path)
        if self.cfg.clip.model is not None:
            if self.cfg.depth.path is None:
                raise ModelUnavailableError(
                    "scoring.clip compares captured with predicted depth: it needs scoring.depth.path too"
                )
            check_clip(self.cfg.clip.model, self.cfg.clip.pretrained, self.cfg.clip.cache_dir)
        if self.cfg.learned_defect.enabled:
            from dav_builder.filters.learned import SHIPPED_WEIGHTS

            w = Path(self.cfg.learned_defect.weights or SHIPPED_WEIGHTS)
            for p in (w, w.with_suffix(".json")):
                if not p.is_file():
                    raise ModelUnavailableError(
                        f"scoring.learned_defect: {p} not found (train weights with 'dav-filter train-check', "
                        "or set scoring.learned_defect.enabled: false)")

    def describe(self) -> list[str]:
        lines = []
        if self.cfg.depth.path is None:
            lines.append("scoring: depth_score is off (set scoring.depth.path to a dav-train run or 'module:callable')")
        else:
            lines.append(f"scoring: depth_score on, model {self.cfg.depth.path} ({self.cfg.depth.steps} step)")
        if self.cfg.clip.model is None:
            lines.append("scoring: semantic_score is off (set scoring.clip.model and scoring.clip.pretrained "
                         "to an open_clip model with local weights)")
        else:
            lines.append(f"scoring: semantic_score on, CLIP {self.cfg.clip.model} / {self.cfg.clip.pretrained}")
        on = [n for n in MODEL_FREE if getattr(self.cfg, n).enabled]
        lines.append("scoring: model-free checks on: " + (", ".join(on) if on else "none"))
        lc = self.cfg.learned_defect
        lines.append(f"scoring: learned_defect on, weights {lc.weights or 'shipped'}" if lc.enabled else
                     "scoring: learned_defect is off (scoring.learned_defect.enabled: true turns it on)")
        return lines

    def setup(self) -> None:
        if self._ready:
            return
        self.validate()
        if self.cfg.depth.path is not None:
            self._depth_model = load_depth_model(self.cfg.depth.path, self.cfg.depth.steps, self.cfg.depth.device)
        if self.cfg.clip.model is not None:
            c = self.cfg.clip
            self._clip = ClipEmbedder(c.model, c.pretrained, c.cache_dir, self.cfg.depth.device)
        if self.cfg.learned_defect.enabled:  # loaded once per worker
            from dav_builder.filters.learned import LearnedCheck

            self._learned = LearnedCheck(self.cfg.learned_defect.weights, self.cfg.learned_defect.device)
        self._ready = True

    # -- scoring --------------------------------------------------------------------------

    def __call__(self, clips: list[Clip]) -> list[Clip]:
        self.setup()
        for clip in clips:
            if not clip.loaded:
                continue
            scores: dict[str, float | None] = {name: None for name in SCORE_NAMES}
            scores.update(self._checks(clip))
            if self._learned is not None:
                scores["learned_defect"] = self.learned_score(clip)
            if self._depth_model is not None:
                scores.update(self._model_scores(clip))
            clip.scores.update(scores)
            clip.failed_checks = failures(clip.scores, self.cfg)
            if clip.failed_checks:
                clip.drop(clip.failed_checks[0])
        return clips

    def _frames(self, clip: Clip, positions: list[int], side: int) -> tuple[np.ndarray, np.ndarray]:
        """RGB (uint8) and nearest-resized depth of some frames at a reduced size.

        Uses the reduced RGB the splitter already decoded when there is one (no second decode:
        decoding is the build's largest cost); otherwise decodes at ``side``.
        """
        if clip.rgb_small is not None and len(clip.rgb_small) == clip.num_frames:
            rgb = clip.rgb_small[positions]
        else:
            rgb = np.stack([decode_rgb_small(clip.rgb[i], f"{clip.clip_id}#{i}", side) for i in positions])
        return rgb, self._depth_at(clip, positions, rgb.shape[1:3], cv2.INTER_NEAREST)

    def learned_frame_scores(self, clip: Clip) -> np.ndarray:
        """The learned check's probability per frame t >= 1 of the clip (from frames t-1, t), on the
        reduced frames the splitter decoded (no second decode)."""
        self.setup()
        assert self._learned is not None, "scoring.learned_defect is off"
        pos = list(range(clip.num_frames))
        rgb, depth = self._frames(clip, pos, self.cfg.check_side)
        K, poses = self._cameras(clip, pos, rgb.shape[1:3])
        return self._learned.frame_scores(rgb, depth, K, poses)

    def learned_score(self, clip: Clip) -> float:
        return checks.kth_largest(self.learned_frame_scores(clip), self.cfg.learned_defect.votes)

    def _checks(self, clip: Clip) -> dict[str, float | None]:
        """Model-free scores over up to ``check_frames`` consecutive frame pairs spread over the clip."""
        cfg = self.cfg
        if not any(getattr(cfg, n).enabled for n in MODEL_FREE):
            return {}
        T = clip.num_frames
        cur = [i + 1 for i in align.sample_indices(T - 1, cfg.check_frames)] if T > 1 else [0]
        prev = [max(0, i - 1) for i in cur]
        pos = sorted(set(cur) | set(prev))
        rgb, depth = self._frames(clip, pos, cfg.check_side)
        grey = rgb.astype(np.float32) @ GREY_WEIGHTS
        at = {p: k for k, p in enumerate(pos)}
        c, p = [at[i] for i in cur], [at[i] for i in prev]
        pairs = T > 1
        out: dict[str, float | None] = {}
        paired = cfg.uses_pair_frames() and (pairs or cfg.edge_misalignment.enabled or cfg.edge_parallax.enabled)
        fine_rgb = _FineFrames(clip, cfg.pair_side or cfg.check_side)
        fine = self._pair_frames(clip, cfg.lag_pairs, fine_rgb) if paired else None
        # the edge checks look at frames t: the pair frames when kept, else the reduced ones
        edge_grey, edge_depth = (fine.grey, fine.depth_nearest) if fine is not None else (grey[c], depth[c])
        if cfg.edge_misalignment.enabled:
            out["edge_misalignment"] = checks.edge_misalignment(edge_grey, edge_depth, cfg.pair_votes)
        if cfg.edge_parallax.enabled:
            out["edge_parallax"] = parallax.edge_parallax(edge_grey, edge_depth)
        if cfg.depth_lag.enabled:
            if not pairs:
                out["depth_lag"] = 0.0
            elif fine is not None:
                out["depth_lag"] = checks.depth_lag(fine.grey_before, fine.grey_prev, fine.grey,
                                                    fine.depth_area_prev, fine.depth_area, cfg.pair_votes)
            else:
                before, _ = self._frames(clip, [max(0, i - 2) for i in cur], cfg.check_side)
                size = grey.shape[1:]
                out["depth_lag"] = checks.depth_lag(
                    before.astype(np.float32) @ GREY_WEIGHTS, grey[p], grey[c],
                    self._depth_at(clip, prev, size, cv2.INTER_AREA), self._depth_at(clip, cur, size, cv2.INTER_AREA),
                    cfg.pair_votes)
        K, poses = self._cameras(clip, pos, grey.shape[1:])
        uses_change = pairs and (cfg.frozen_depth.enabled or cfg.depth_jump.enabled)
        change = checks.image_change(grey[p], grey[c]) if uses_change else None  # both use it
        if cfg.frozen_depth.enabled:
            out["frozen_depth"] = checks.frozen_depth(
                grey[p], grey[c], depth[p], depth[c], None if K is None else np.stack([K[p], K[c]], 1),
                None if poses is None else np.stack([poses[p], poses[c]], 1), change=change) if pairs else 0.0
        if pairs and (cfg.static_overlay.enabled or cfg.depthless_content.enabled):  # every frame, fine
            fine_depth = self._depth_at(clip, list(range(T)), fine_rgb[0].shape[:2], cv2.INTER_NEAREST)
        if cfg.static_overlay.enabled:
            out["static_overlay"] = self._overlay(clip, fine_rgb, fine_depth) if pairs else 0.0
        if cfg.depthless_content.enabled:
            out["depthless_content"] = self._depthless(clip, fine_rgb, fine_depth) if pairs else 0.0
        posed = K is not None and poses is not None and bool(np.isfinite(poses).all())
        if cfg.pose_misfit.enabled:  # frames in clip order: pos is sorted
            out["pose_misfit"] = (checks.pose_misfit(depth, K, poses) if posed else None) if pairs else 0.0
        if cfg.depth_jump.enabled:
            out["depth_jump"] = (checks.depth_jump(depth[p], depth[c], np.stack([K[p], K[c]], 1),
                                                   np.stack([poses[p], poses[c]], 1), change, grey[p], grey[c])
                                 if posed else None) if pairs else 0.0
        if cfg.motion_mismatch.enabled:
            out["motion_mismatch"] = (self._runs(pos, lambda r: checks.motion_mismatch(
                grey[r], depth[r], K[r], poses[r]))  # type: ignore[index]
                if posed else None) if pairs else 0.0
        if cfg.unexplained_change.enabled:
            out["unexplained_change"] = (self._runs(pos, lambda r: checks.unexplained_change(
                grey[r], depth[r], K[r], poses[r]))  # type: ignore[index]
                if posed else None) if pairs else 0.0
        return out

    @staticmethod
    def _runs(pos: list[int], score) -> float:
        """The largest ``score(run)`` over the runs (slices) of consecutive frames among ``pos``."""
        worst, start = 0.0, 0
        for k in range(1, len(pos) + 1):
            if k == len(pos) or pos[k] != pos[k - 1] + 1:  # a run of consecutive frames ends
                if k - start >= 2:
                    worst = max(worst, score(slice(start, k)))
                start = k
        return worst

    @staticmethod
    def _cameras(clip: Clip, pos: list[int], size: tuple[int, int]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Intrinsics scaled to frames of ``size`` (h, w), and camera-to-world poses, of some
        frames (None where the clip has none)."""
        h, w = size
        K = None
        if clip.K is not None:
            K = np.asarray(clip.K, np.float64)[pos].copy()
            K[:, 0] *= w / clip.width
            K[:, 1] *= h / clip.height
        poses = None if clip.cam_to_world is None else np.asarray(clip.cam_to_world, np.float64)[pos]
        return K, poses

    def _overlay(self, clip: Clip, fine_rgb: "_FineFrames", depth: np.ndarray) -> float:
        """:func:`checks.static_overlay` on every frame of the clip in colour at up to
        ``pair_side`` (kept from reading, or decoded once), with ``depth`` nearest-sampled to it."""
        pos = list(range(clip.num_frames))
        rgb = np.stack([fine_rgb[i] for i in pos])
        K, poses = self._cameras(clip, pos, rgb.shape[1:3])
        return checks.static_overlay(rgb, depth, K, poses)

    def _depthless(self, clip: Clip, fine_rgb: "_FineFrames", depth: np.ndarray) -> float | None:
        """:func:`checks.depthless_content` on every frame of the clip at up to ``pair_side``, with
        ``depth`` nearest-sampled to it (None without camera poses)."""
        pos = list(range(clip.num_frames))
        K, poses = self._cameras(clip, pos, depth.shape[1:])
        if K is None or poses is None or not bool(np.isfinite(poses).all()):
            return None
        return checks.depthless_content([fine_rgb[i] for i in pos], self._valid_at(clip, depth), K, poses)

    @staticmethod
    def _valid_at(clip: Clip, depth: np.ndarray) -> np.ndarray:
        """Where each frame of the clip has depth at the size of ``depth`` (the clip's depth
        nearest-sampled to it): a pixel is valid when any capture pixel under it is (thin structures
        with depth, a pole against the sky, survive the reduction)."""
        assert clip.depth is not None
        valid = depth > 0
        h, w = depth.shape[1:]
        if (h, w) == clip.depth.shape[1:]:
            return valid
        # a maximum over each pixel's block: dilate by a window wider than a block, then sample
        # (several times cheaper than an area reduction at a fractional scale); only for frames the
        # sampled depth leaves a hole in (most frames have depth everywhere)
        k = 2 * int(np.ceil(max(clip.depth.shape[1] / h, clip.depth.shape[2] / w))) + 1
        for i in np.flatnonzero(~valid.reshape(len(valid), -1).all(1)):
            grown = cv2.dilate(cv2.compare(clip.depth[i], 0, cv2.CMP_GT), np.ones((k, k), np.uint8))
            valid[i] = cv2.resize(grown, (w, h), interpolation=cv2.INTER_NEAREST) > 0
        return valid

    def _pair_frames(self, clip: Clip, n_pairs: int, fine_rgb: "_FineFrames") -> "_PairFrames":
        """``n_pairs`` frames t spread over the clip with the two before each (t-1, t-2), at up to
        ``pair_side`` (a lag or a misaligned camera moves edges by a pixel or two, which the
        splitter's reduced frames blur away), in grey.  A one-frame clip gives its frame without
        a pair."""
        T = clip.num_frames
        cur = sorted({int(round(x)) for x in np.linspace(1, T - 1, min(n_pairs, T - 1))}) if T > 1 else [0]
        prev = [max(0, i - 1) for i in cur]
        before = [max(0, i - 2) for i in cur]
        grey = {i: cv2.cvtColor(fine_rgb[i], cv2.COLOR_RGB2GRAY).astype(np.float32)
                for i in sorted(set(cur) | set(prev) | set(before))}
        size = grey[cur[0]].shape
        both = sorted(set(cur) | set(prev))  # mostly the same frames: each resized once
        area = dict(zip(both, self._depth_at(clip, both, size, cv2.INTER_AREA)))
        return _PairFrames(np.stack([grey[i] for i in before]), np.stack([grey[i] for i in prev]),
                           np.stack([grey[i] for i in cur]), np.stack([area[i] for i in prev]),
                           np.stack([area[i] for i in cur]), self._depth_at(clip, cur, size, cv2.INTER_NEAREST))

    @staticmethod
    def _depth_at(clip: Clip, positions: list[int], size: tuple[int, int], interpolation: int) -> np.ndarray:
        """Depth of some frames resized to ``size`` (h, w): area-averaged for gradient tests (smooth
        boundaries), nearest for edge tests (sharp ones); as stored when already that size."""
        assert clip.depth is not None
        h, w = size
        if (h, w) == clip.depth.shape[1:]:
            return clip.depth[positions]
        return np.stack([cv2.resize(clip.depth[i], (w, h), interpolation=interpolation) for i in positions])

    def _model_scores(self, clip: Clip) -> dict[str, float | None]:
        assert clip.depth is not None
        pos = align.sample_indices(clip.num_frames, self.cfg.sample_frames)
        rgb = np.stack([self._decode_full(clip, i) for i in pos])
        gt = clip.depth[pos]
        model = self._depth_model
        if getattr(model, "takes_frame_indices", False):
            pred = model(rgb, [int(clip.frame_indices[i]) for i in pos])  # type: ignore[misc]
        else:
            pred = model(rgb)  # type: ignore[misc]
        pred = np.asarray(pred, dtype=np.float32)
        if pred.shape != gt.shape:
            raise ValueError(f"depth model returned shape {pred.shape} for frames of shape {gt.shape}")
        out: dict[str, float | None] = {"depth_score": align.depth_score(pred, gt)}
        if self._clip is not None:
            aligned, valid = align.align_disparity(pred, gt)
            gt_disp = np.where(valid, 1.0 / np.maximum(gt, 1e-6), 0.0)
            pr_disp = np.where(valid, 1.0 / np.maximum(aligned, 1e-6), 0.0)
            lo, hi = np.percentile(gt_disp[valid], [2, 98]) if valid.any() else (0.0, 1.0)
            ims = [colorize(d, lo, hi) for d in gt_disp] + [colorize(d, lo, hi) for d in pr_disp]
            emb = self._clip.embed(ims)
            n = len(gt_disp)
            sims = (emb[:n] * emb[n:]).sum(axis=1)
            out["semantic_score"] = float(np.median(sims))
        return out

    @staticmethod
    def _decode_full(clip: Clip, i: int) -> np.ndarray:
        from dav_builder.capture.imageio import decode_rgb

        return decode_rgb(clip.rgb[i], f"{clip.clip_id}#{i}")
