"""Readers of the evaluation benchmarks, each in its official layout (see each module's doc)."""

from __future__ import annotations

from dav_builder.evaluation.readers.base import Reader
from dav_builder.evaluation.readers.bonn import Bonn
from dav_builder.evaluation.readers.diode import DIODE
from dav_builder.evaluation.readers.eth3d import ETH3D
from dav_builder.evaluation.readers.kitti import KITTI
from dav_builder.evaluation.readers.nyuv2 import NYUv2
from dav_builder.evaluation.readers.scannet import ScanNet
from dav_builder.evaluation.readers.scannetpp import ScanNetPP
from dav_builder.evaluation.readers.sintel import Sintel

READERS: dict[str, type[Reader]] = {r.info.name: r for r in (ScanNetPP, ScanNet, KITTI, NYUv2, Sintel, Bonn,
                                                             ETH3D, DIODE)}


def open_benchmark(name: str, root, **options) -> Reader:
    if name not in READERS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(READERS)}")
    return READERS[name](root, **options)
