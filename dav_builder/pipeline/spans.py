"""Pure functions that decide where scenes break and how scenes become clips.

No I/O and no state beyond the arguments: each is tested in milliseconds.
"""

from __future__ import annotations

import numpy as np

from dav_builder.capture.imageio import GREY_WEIGHTS


def clip_lengths_for_remainder(remaining: int, lengths: tuple[int, ...]) -> list[int]:
    """Cut ``remaining`` frames greedily into the longest configured lengths that fit.

    ``lengths`` must be sorted longest first.  Frames left over (fewer than the shortest length)
    are not part of any clip; the caller accounts for them.

    >>> clip_lengths_for_remainder(45, (32, 16, 8))
    [32, 8]
    """
    out = []
    for length in lengths:
        while remaining >= length:
            out.append(length)
            remaining -= length
    return out


def plan_scene(scene_len: int, lengths: tuple[int, ...]) -> list[tuple[int, int]]:
    """(offset, length) of the clips a scene of ``scene_len`` frames is cut into.

    Greedy, longest first; identical to what the streaming splitter emits (it cuts a clip of
    the longest length whenever that many frames are buffered, and the rest at the scene's end).
    """
    spans, offset = [], 0
    for length in clip_lengths_for_remainder(scene_len, lengths):
        spans.append((offset, length))
        offset += length
    return spans


def luma(rgb_small: np.ndarray) -> float:
    """Mean Rec. 601 luma of an RGB uint8 image, 0..255."""
    f = rgb_small.reshape(-1, 3).astype(np.float32)
    return float((f @ GREY_WEIGHTS).mean())


def pose_step(prev: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """Translation (pose units, metres) and rotation (degrees) between two cam_to_world poses."""
    t = float(np.linalg.norm(cur[:3, 3] - prev[:3, 3]))
    r = prev[:3, :3].T @ cur[:3, :3]
    cos = np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)
    return t, float(np.degrees(np.arccos(cos)))


def is_pose_jump(
    step_m: float,
    step_deg: float,
    recent_steps_m: list[float],
    min_jump_m: float,
    jump_factor: float,
    max_deg: float,
) -> bool:
    """A teleport: a step far longer than both a floor and the recent typical step, or a big turn.

    The floor ``min_jump_m`` keeps a camera that starts moving from counting as a jump; the
    factor adapts the test to the capture's own speed (a car moves metres per frame, a walker
    centimetres).
    """
    if step_deg > max_deg:
        return True
    typical = float(np.median(recent_steps_m)) if recent_steps_m else 0.0
    return step_m > max(min_jump_m, jump_factor * typical)


def depth_frozen(prev: np.ndarray | None, cur: np.ndarray) -> bool:
    """True when a depth frame is bit-identical to the previous one (the buffer stopped updating)."""
    if prev is None or prev.shape != cur.shape:
        return False
    # a sparse grid first: moving frames almost always differ there, and it costs 1/64 of the full test
    return np.array_equal(prev[::8, ::8], cur[::8, ::8]) and np.array_equal(prev, cur)


def rgb_changed(prev_small: np.ndarray | None, cur_small: np.ndarray, min_mean_abs: float = 0.5) -> bool:
    """True when two reduced RGB frames differ by more than ``min_mean_abs`` grey levels on average."""
    if prev_small is None or prev_small.shape != cur_small.shape:
        return True
    return float(np.abs(prev_small.astype(np.int16) - cur_small.astype(np.int16)).mean()) > min_mean_abs
