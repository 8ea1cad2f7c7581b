"""dav-build: the pipeline from captures to bucketed WebDataset shards.

Stage logic (``splitter``, ``ranges``, ``stages``, ``buckets``, ``spans``) is plain Python;
``executors`` is the only module that imports Ray; ``sink`` writes each work unit's shards in its
worker, and manifest and stats in the driver.
"""
