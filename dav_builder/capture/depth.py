"""Hardware depth buffers to planar metres: pure, vectorised numpy (no I/O).

Conventions (CAPTURE_FORMAT.md; n = near, f = far, d = stored value, z = metres along the axis):

============================  ==========================================
``linear``                    ``z = d * scale`` (``kind="ray"``: Euclidean distance, converted with K)
``gl``                        ``z = 2fn / ((f + n) - (2d - 1)(f - n))``
``d3d``                       ``z = nf / (f - d (f - n))``
``reversed``                  ``z = nf / (n + d (f - n))``
``reversed_infinite``         ``z = n / d``
============================  ==========================================

``far = inf`` (an infinite far plane) uses the limits: ``z = n / (1 - d)`` for ``gl`` and ``d3d``,
``z = n / d`` for ``reversed``.

Every function returns float32 metres with ``0`` where there is no valid depth: non-finite input,
values listed as invalid, values that map outside ``[near, far]`` or to ``z <= 0``.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

CONVENTIONS = ("linear", "gl", "d3d", "reversed", "reversed_infinite")
NONLINEAR = ("gl", "d3d", "reversed", "reversed_infinite")
#: Relative slack on [near, far] so values exactly at the planes survive float rounding.
_PLANE_TOL = 1e-4


def check_planes(convention: str, near: float | None, far: float | None) -> None:
    """Raise ValueError unless ``near``/``far`` suit ``convention``."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown depth convention {convention!r}; expected one of {CONVENTIONS}")
    if convention == "linear":
        return
    if near is None:
        raise ValueError(f"depth convention {convention!r} needs depth.near (and a projection or depth.far)")
    if not np.isfinite(near) or near <= 0:
        raise ValueError(f"depth.near must be a positive number of metres, got {near}")
    if convention == "reversed_infinite":
        return
    if far is None:
        raise ValueError(f"depth convention {convention!r} needs depth.far")
    if not far > near:
        raise ValueError(f"depth.near ({near}) must be smaller than depth.far ({far})")


def nonfinite(d: np.ndarray) -> np.ndarray | None:
    """Where ``d`` is NaN or infinite (bool), or None when nowhere: the usual case is settled by one
    reduction, since a sum is finite exactly when every term is (NaN and inf propagate), unless it
    overflows; only then, or when something is not finite, is the mask built."""
    if d.dtype.kind in "biu":
        return None
    with np.errstate(all="ignore"):  # an overflowing sum only sends it to the mask
        if np.isfinite(d.sum()):
            return None
    mask = ~np.isfinite(d)
    return mask if mask.any() else None


def pixel_rays(K: np.ndarray, height: int, width: int) -> np.ndarray:
    """``sqrt(1 + ((u - cx)/fx)^2 + ((v - cy)/fy)^2)`` per pixel: ray length per metre of z."""
    K = np.asarray(K, dtype=np.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    u = (np.arange(width, dtype=np.float64) - cx) / fx
    v = (np.arange(height, dtype=np.float64) - cy) / fy
    return np.sqrt(1.0 + u[None, :] ** 2 + v[:, None] ** 2)


def ray_to_planar(r: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Euclidean distance to the camera centre -> distance along the optical axis."""
    r = np.asarray(r, dtype=np.float64)
    return (r / pixel_rays(K, *r.shape[-2:])).astype(np.float32)


def planar_to_ray(z: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Distance along the optical axis -> Euclidean distance to the camera centre."""
    z = np.asarray(z, dtype=np.float64)
    return (z * pixel_rays(K, *z.shape[-2:])).astype(np.float32)


def to_planar_metres(
    d: np.ndarray,
    convention: str,
    *,
    near: float | None = None,
    far: float | None = None,
    scale: float = 1.0,
    kind: str = "z",
    K: np.ndarray | None = None,
    invalid: Iterable[float] = (),
) -> np.ndarray:
    """Convert a stored depth buffer to planar metres (float32, 0 = invalid)."""
    check_planes(convention, near, far)
    d = np.asarray(d)
    bad = nonfinite(d)  # None: nothing to mask yet (the usual case, without building a mask)
    for value in invalid:
        hit = d == value
        bad = hit if bad is None else bad | hit
    if convention == "linear":
        if kind not in ("z", "ray"):
            raise ValueError(f"depth.kind must be 'z' or 'ray', got {kind!r}")
        if kind == "ray" and K is None:
            raise ValueError("depth.kind 'ray' needs intrinsics K to convert to planar depth")
        x = (d if bad is None else np.where(bad, 0.0, d)).astype(np.float64)
        z = x * float(scale)
        if kind == "ray":
            z /= pixel_rays(K, *z.shape[-2:])
        ok = z > 0 if bad is None else ~bad & (z > 0)
        return np.where(ok, z, 0.0).astype(np.float32)
    p, q, r, n, f = rational_coefficients(convention, float(near), None if far is None else float(far))
    # every non-linear convention is z = p / (q + r d): one in-place float64 pass
    z = d.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z *= r
        z += q
        np.divide(p, z, out=z)
    # NaN fails both comparisons; d = 0 with an infinite far plane gives inf: sky
    outside = ~((z >= n * (1 - _PLANE_TOL)) & (z <= min(f * (1 + _PLANE_TOL), np.finfo(np.float64).max)))
    bad = outside if bad is None else bad | outside
    out = z.astype(np.float32)
    out[bad] = 0.0
    return out


def rational_coefficients(convention: str, near: float, far: float | None) -> tuple[float, float, float, float, float]:
    """``(p, q, r, near, far)`` with ``z = p / (q + r d)`` for a non-linear convention.

    OpenGL window depth (range 0..1) gives ``2fn / ((f + n) - (2d - 1)(f - n)) = fn / (f - d (f - n))``,
    the same map as Direct3D; with ``f -> inf`` both become ``n / (1 - d)``, reversed-Z ``n / d``.
    """
    n = near
    f = np.inf if far is None or convention == "reversed_infinite" else far
    if convention in ("gl", "d3d"):
        if np.isinf(f):
            return n, 1.0, -1.0, n, f
        return n * f, f, -(f - n), n, f
    if convention == "reversed":
        if np.isinf(f):
            return n, 0.0, 1.0, n, f
        return n * f, n, f - n, n, f
    if convention == "reversed_infinite":
        return n, 0.0, 1.0, n, f
    raise ValueError(f"unknown depth convention {convention!r}; expected one of {CONVENTIONS}")


def from_planar_metres(
    z: np.ndarray, convention: str, *, near: float | None = None, far: float | None = None, scale: float = 1.0
) -> np.ndarray:
    """The stored buffer value that :func:`to_planar_metres` maps back to ``z`` (float64).

    Used by tests and by the synthetic engine's defect injection; inverse of each formula.
    """
    check_planes(convention, near, far)
    z = np.asarray(z, dtype=np.float64)
    if convention == "linear":
        return z / scale
    n = float(near)  # type: ignore[arg-type]
    f = float(far) if far is not None else np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        if np.isinf(f):  # infinite far plane
            return 1 - n / z if convention in ("gl", "d3d") else n / z
        if convention == "gl":
            return ((f + n) - 2 * f * n / z) / (f - n) / 2 + 0.5
        if convention == "d3d":
            return (f - n * f / z) / (f - n)
        if convention == "reversed":
            return (n * f / z - n) / (f - n)
        return n / z


#: NDC depth at the near and at the far plane for each depth range.
_NDC_RANGE = {"gl": (-1.0, 1.0), "d3d": (0.0, 1.0), "reversed": (1.0, 0.0), "reversed_infinite": (1.0, 0.0)}


def _column_vector_form(P: np.ndarray) -> np.ndarray:
    """``P`` for column vectors (``clip = P @ [x, y, z, 1]``).

    Direct3D code (DirectXMath, GTA V dumps) multiplies row vectors, ``clip = v @ M``, so its matrix
    written row-major is the transpose: the ``w = ±z`` term sits in ``M[2][3]`` and ``M[3][2]`` holds
    the depth offset.  Such a matrix is recognised by ``|M[2][3]| = 1``, ``M[3][3] = 0`` and
    ``|M[3][2]| != 1`` and transposed; when both readings are possible the column-vector one wins.
    """
    if abs(abs(P[3, 2]) - 1.0) <= 1e-6:
        return P
    if abs(abs(P[2, 3]) - 1.0) <= 1e-6 and abs(P[3, 3]) <= 1e-9 and not P[3, :2].any():
        return P.T
    raise ValueError(
        f"projection is not a perspective matrix with w = ±z (P[3][2] = {P[3, 2]:g}, P[2][3] = {P[2, 3]:g})"
    )


def intrinsics_from_projection(
    P: np.ndarray, width: int, height: int, convention_hint: str | None = None
) -> tuple[np.ndarray, float, float]:
    """Pinhole K (pixels, OpenCV) and the near and far planes (metres) from a 4x4 projection matrix.

    Assumptions, all checked where the matrix can tell:

    * ``P`` is row-major and maps camera (view) coordinates to clip space, ``clip = P @ [x, y, z, 1]``
      (a Direct3D row-vector matrix is recognised and transposed, see :func:`_column_vector_form`).
    * The view space has x right and y **up**.  It is right-handed and the camera looks down -z
      (OpenGL, ``P[3][2] = -1``) or left-handed and looks down +z (Direct3D, ``P[3][2] = +1``);
      with ``s = P[3][2]``, ``w = s z`` is the positive distance ``t`` along the view axis.
    * Images are stored top row first, and NDC y = +1 is the top row (OpenGL after the usual
      read-back flip, Direct3D): ``u = (x_ndc + 1) W / 2 - 0.5`` and ``v = (1 - y_ndc) H / 2 - 0.5``
      with pixel centres at integers as in CAPTURE_FORMAT.md, so ``fx = P00 W / 2``,
      ``cx = (1 + s P02) W / 2 - 0.5``, ``fy = P11 H / 2``, ``cy = (1 - s P12) H / 2 - 0.5``.
      A matrix with ``P11 < 0`` flips y into NDC (Vulkan style, NDC y = +1 is the bottom row):
      then ``fy = -P11 H / 2`` and ``cy = (1 + s P12) H / 2 - 0.5``.
    * NDC depth is ``a + b / t`` with ``a = s P22`` and ``b = P23``.  ``b > 0`` means depth falls with
      distance: reversed-Z (``a = 0``: infinite far plane).  ``b < 0`` is a standard matrix, whose
      NDC range an OpenGL ([-1, 1]) and a Direct3D ([0, 1]) matrix cannot tell apart, so
      ``convention_hint`` ("gl" or "d3d", normally the capture's depth convention) names it; without
      a hint, "gl" is assumed.  An infinite far plane comes back as ``inf``.

    Raises ValueError for a matrix that is not a perspective projection or gives no
    ``0 < near < far``.
    """
    P = np.asarray(P, dtype=np.float64)
    if P.shape != (4, 4) or not np.isfinite(P).all():
        raise ValueError(f"projection must be a finite 4x4 matrix, got shape {P.shape}")
    if convention_hint is not None and convention_hint not in CONVENTIONS:
        raise ValueError(f"unknown depth convention {convention_hint!r}; expected one of {CONVENTIONS}")
    P = _column_vector_form(P)
    s = float(np.sign(P[3, 2]))
    y_sign = 1.0 if P[1, 1] >= 0 else -1.0  # -1: y-down NDC
    K = np.array(
        [
            [P[0, 0] * width / 2, -P[0, 1] * width / 2, (1 + s * P[0, 2]) * width / 2 - 0.5],
            [0.0, y_sign * P[1, 1] * height / 2, (1 - y_sign * s * P[1, 2]) * height / 2 - 0.5],
            [0.0, 0.0, 1.0],
        ]
    )
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise ValueError(f"projection gives non-positive focal lengths fx={K[0, 0]:g}, fy={K[1, 1]:g}")
    a, b = s * P[2, 2], P[2, 3]
    if b > 0:  # depth decreases with distance: reversed-Z
        style = "reversed_infinite" if abs(a) <= 1e-9 else "reversed"
    elif b < 0:
        style = "d3d" if convention_hint == "d3d" else "gl"
    else:
        raise ValueError("projection has no depth term (P[2][3] = 0)")
    if convention_hint in NONLINEAR and (convention_hint.startswith("reversed") != style.startswith("reversed")):
        raise ValueError(
            f"projection is {'reversed' if b > 0 else 'standard'}-Z but the depth convention is {convention_hint!r}"
        )
    n_ndc, f_ndc = _NDC_RANGE[style]

    def distance_at(ndc: float) -> float:
        den = ndc - a
        return float(b / den) if abs(den) > 1e-12 else float("inf")

    near, far = distance_at(n_ndc), distance_at(f_ndc)
    if style == "reversed_infinite" or not np.isfinite(far) or far <= 0:
        far = float("inf")
    if not (near > 0 and far > near):
        raise ValueError(f"projection gives near {near:g} and far {far:g} for a {style} depth range")
    return K, near, far


def perspective_projection(
    K: np.ndarray,
    width: int,
    height: int,
    near: float,
    far: float,
    convention: str = "gl",
    *,
    handedness: str = "right",
    y_down_ndc: bool = False,
) -> np.ndarray:
    """A projection matrix for ``K`` and a depth range: the inverse of :func:`intrinsics_from_projection`.

    ``handedness="right"`` gives an OpenGL-style view space (looking down -z), ``"left"`` a
    Direct3D one (looking down +z); ``convention`` picks the NDC depth range ("gl" [-1, 1], "d3d"
    [0, 1], "reversed", "reversed_infinite"); ``far = inf`` gives an infinite far plane.  Used by
    tests and the synthetic engine.
    """
    if convention not in _NDC_RANGE:
        raise ValueError(f"no projection for depth convention {convention!r}")
    if handedness not in ("right", "left"):
        raise ValueError(f"handedness must be 'right' or 'left', got {handedness!r}")
    K = np.asarray(K, dtype=np.float64)
    s = -1.0 if handedness == "right" else 1.0
    y = -1.0 if y_down_ndc else 1.0
    P = np.zeros((4, 4))
    P[0, 0] = 2 * K[0, 0] / width
    P[0, 1] = -2 * K[0, 1] / width
    P[0, 2] = ((K[0, 2] + 0.5) * 2 / width - 1) / s
    P[1, 1] = y * 2 * K[1, 1] / height
    P[1, 2] = -y * ((K[1, 2] + 0.5) * 2 / height - 1) / s
    P[3, 2] = s
    n_ndc, f_ndc = _NDC_RANGE[convention]
    if convention == "reversed_infinite" or not np.isfinite(far):
        a, b = f_ndc, (n_ndc - f_ndc) * near
    else:
        b = (n_ndc - f_ndc) / (1 / near - 1 / far)
        a = n_ndc - b / near
    P[2, 2] = a / s
    P[2, 3] = b
    return P
