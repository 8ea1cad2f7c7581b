"""Depth members: float16 .npy exactly as numpy would write it, invalid values as 0."""

import numpy as np

from dav_builder.shards.tario import depth_to_npy, npy_to_depth


def test_depth_npy_matches_numpy_float16_rounding_and_zeroes_invalid():
    rng = np.random.default_rng(0)
    d = (rng.random((37, 53)) * 70000).astype(np.float32)
    d[0, :4] = [np.nan, -3.0, np.inf, 65519.0]
    d[1, :3] = [0.1234567, 1e-3, 65503.0]
    out = npy_to_depth(depth_to_npy(d))
    ref = np.where(np.isfinite(d) & (d > 0) & (d < 65504), d, 0).astype(np.float16)
    assert out.dtype == np.float16 and out.shape == d.shape
    assert np.array_equal(out, ref)
    assert out[0, :4].tolist() == [0, 0, 0, 0] and np.isfinite(out).all()
