"""dav-builder: data engine, dataset builder and trainer for video depth estimation."""

__version__ = "0.1.0"
