"""Test-time ensembling of affine-invariant predictions (pure numpy).

A diffusion model gives a different disparity for every noise draw, each with its own unknown
scale and shift.  As Marigold (and the Depth Any Video evaluation after it) ensembles, the
members are first brought to a common scale and shift, then combined per pixel by the median,
which ignores a member that went astray.  Marigold solves for all members' scales and shifts
jointly; here the same agreement is reached by alternating, which needs no optimiser: start
from the per-pixel median of the raw members, fit every member to it by least squares (one
scale and shift per member over the whole clip, so that temporal consistency is kept), take the
median of the aligned members as the new reference, and repeat.  Two rounds settle to within
numerical noise on the tests' cases.
"""

from __future__ import annotations

import numpy as np


def fit_to(member: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Least-squares ``(s, t)`` with ``s * member + t ~ reference`` over all pixels ((1, 0) if flat)."""
    m = member.astype(np.float64).ravel()
    r = reference.astype(np.float64).ravel()
    var = m.var()
    if m.size < 2 or var <= 1e-20:
        return 1.0, float(r.mean() - m.mean())
    s = float(((m - m.mean()) * (r - r.mean())).mean() / var)
    return s, float(r.mean() - s * m.mean())


def align_members(members: np.ndarray, rounds: int = 2) -> np.ndarray:
    """Members (N, ...) each scaled and shifted onto their common median (see the module doc)."""
    members = np.asarray(members, np.float64)
    if members.ndim < 2:
        raise ValueError(f"expected members stacked on the first axis, got shape {members.shape}")
    aligned = members
    for _ in range(max(1, rounds)):
        ref = np.median(aligned, axis=0)
        aligned = np.stack([m * s + t for m, (s, t) in ((m, fit_to(m, ref)) for m in members)])
    return aligned


def ensemble(members, rounds: int = 2, reduce: str = "median") -> np.ndarray:
    """Combine N predictions (a list or an (N, ...) array) into one, float32.

    One member is returned as it is.  ``reduce``: ``median`` (default, robust) or ``mean``.
    """
    arr = np.stack([np.asarray(m) for m in members]) if isinstance(members, (list, tuple)) else np.asarray(members)
    if len(arr) == 0:
        raise ValueError("ensemble of no members")
    if len(arr) == 1:
        return arr[0].astype(np.float32)
    aligned = align_members(arr, rounds)
    if reduce == "median":
        out = np.median(aligned, axis=0)
    elif reduce == "mean":
        out = aligned.mean(axis=0)
    else:
        raise ValueError(f"reduce must be median or mean, got {reduce!r}")
    return out.astype(np.float32)
