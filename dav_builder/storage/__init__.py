"""Where datasets and captures live: local paths or object stores, through fsspec.

:class:`Store` is one dataset's root (``/data/ds``, ``file:///data/ds``, ``s3://bucket/ds``,
``gs://bucket/ds``...).  It is small and picklable, so Ray workers receive it and write their shards
straight to the dataset's storage.  :func:`open_store` checks, before any work starts, that the
scheme can be served (its fsspec implementation is installed) and that the location answers.
"""

from dav_builder.storage.location import (
    StorageError,
    Store,
    is_url,
    local_copy,
    local_dataset,
    open_store,
    stage_tree,
)

__all__ = ["StorageError", "Store", "is_url", "local_copy", "local_dataset", "open_store", "stage_tree"]
