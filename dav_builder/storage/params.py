"""The ``DATASET`` argument of ``dav-filter`` and ``dav-train``: a directory or a URL."""

from __future__ import annotations

import click

from dav_builder.storage.location import StorageError, local_dataset


class DatasetLocation(click.ParamType):
    """A dataset directory, or a URL (``s3://``, ``gs://``, ``file://``) copied to a local cache:
    only ``what`` is downloaded (``manifest``; ``kept``: also the shards holding kept clips; ``all``)."""

    name = "dataset"

    def __init__(self, what: str = "kept"):
        self.what = what

    def convert(self, value, param, ctx):
        try:
            return local_dataset(value, self.what)
        except StorageError as exc:
            self.fail(str(exc), param, ctx)
