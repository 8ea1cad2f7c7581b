"""dav-build: the pipeline from captures to bucketed WebDataset shards.

Stage logic (``splitter``, ``stages``, ``buckets``, ``spans``) is plain Python; ``executors`` is
the only module that imports Ray; ``sink`` writes shards, manifest and stats in the driver.
"""
