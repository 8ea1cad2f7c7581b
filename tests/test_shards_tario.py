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


def test_npz_codec_is_lossless_deterministic_and_webdataset_decodes_it():
    import io
    import zipfile

    import webdataset as wds

    from dav_builder.shards.tario import decode_depth, depth_codec_of, depth_to_npz, encode_depth

    rng = np.random.default_rng(1)
    d = (rng.random((40, 64)) * 30 + 0.5).astype(np.float32)
    d[:3] = 0  # invalid pixels stay 0
    npy, npz = encode_depth(d, "npy"), encode_depth(d, "npz")
    assert depth_codec_of(npy) == "npy" and depth_codec_of(npz) == "npz"
    assert np.array_equal(decode_depth(npz), decode_depth(npy))  # the same float16 values
    assert decode_depth(npz).dtype == np.float16
    # webdataset's default decoder and plain numpy read it with no code of ours
    assert np.array_equal(wds.autodecode.npz_loads(npz)["depth"], decode_depth(npy))
    with np.load(io.BytesIO(npz), allow_pickle=False) as z:
        assert z.files == ["depth"]
    # byte-identical on every call: no clock or host in the zip
    assert depth_to_npz(d) == npz
    info = zipfile.ZipFile(io.BytesIO(npz)).infolist()[0]
    assert info.date_time == (1980, 1, 1, 0, 0, 0) and info.compress_type == zipfile.ZIP_DEFLATED
    # smooth depth compresses (the point of the codec)
    smooth = np.tile(np.linspace(1, 20, 64, dtype=np.float32), (40, 1))
    assert len(encode_depth(smooth, "npz")) < len(encode_depth(smooth, "npy")) / 3


def test_unknown_depth_codec_and_member_are_clear_errors():
    import pytest

    from dav_builder.shards.tario import decode_depth, encode_depth

    with pytest.raises(ValueError, match="depth codec 'png' is not one of"):
        encode_depth(np.ones((2, 2)), "png")
    with pytest.raises(ValueError, match="neither .npy nor .npz"):
        decode_depth(b"garbage")


def test_zip_one_is_a_valid_zip_with_either_deflate_engine():
    import io
    import zipfile

    from dav_builder.shards.zipdeflate import deflate_engine, zip_one

    data = np.random.default_rng(2).integers(0, 4, 5000, dtype=np.uint8).tobytes() + b"\0" * 3000
    outs = {}
    for engine in ("isal", "zlib"):
        if engine == "isal" and deflate_engine() != "isal":
            continue
        blob = zip_one("depth.npy", data, engine=engine)
        zf = zipfile.ZipFile(io.BytesIO(blob))
        assert zf.testzip() is None  # CRC and sizes right
        (info,) = zf.infolist()
        assert (info.filename, info.compress_type, info.external_attr >> 16) == ("depth.npy", zipfile.ZIP_DEFLATED, 0o100644)
        assert zf.read("depth.npy") == data and len(blob) < len(data)
        outs[engine] = blob
    assert "zlib" in outs
