"""A dataset (or capture) location on any fsspec filesystem, with the few operations a build needs.

Local paths keep the crash-safe write of a local disk (temporary name, then ``os.replace``).  On
an object store there is no rename, but one upload is all-or-nothing: an object is visible under
its name only once the upload completes, so a shard is uploaded under its final name and only
then its completion record is written (see :mod:`dav_builder.shards.writer`).

The object store's endpoint and credentials come from the usual environment of its fsspec
implementation (for S3: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``), read by every process that opens the store, Ray workers included.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCAL_PROTOCOLS = ("file", "local")
METADATA_SUFFIXES = (".json", ".jsonl", ".txt", ".yaml", ".yml", ".csv", ".xml", ".cfg", ".ini")
"""Files downloaded to find captures under a URL (the rest stay remote until a worker opens a capture)."""


class StorageError(RuntimeError):
    """A location cannot be used (unknown scheme, missing library, unreachable store, no bucket)."""


def split_url(url: str | os.PathLike) -> tuple[str, str]:
    """``(protocol, path)`` of ``url``; plain paths are ``file``."""
    text = os.fspath(url)
    if "://" not in text:
        return "file", text
    proto, rest = text.split("://", 1)
    return proto.lower(), rest


def is_url(path: str | os.PathLike) -> bool:
    """True for a location on a remote filesystem (``file://`` and plain paths are local)."""
    return split_url(path)[0] not in LOCAL_PROTOCOLS


@dataclass
class Store:
    """One root directory on a filesystem; relative paths use ``/``.  Picklable (the filesystem
    object is made again in each process)."""

    url: str
    protocol: str = ""
    root: str = ""
    _fs: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        proto, path = split_url(self.url)
        self.protocol = proto
        if proto in LOCAL_PROTOCOLS:
            self.root = str(Path(path).expanduser().absolute())
            self.url = self.root
        else:
            self.root = path.rstrip("/")
            self.url = f"{proto}://{self.root}"

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fs"] = None
        return state

    @property
    def local(self) -> bool:
        return self.protocol in LOCAL_PROTOCOLS

    @property
    def fs(self):
        if self._fs is None:
            import fsspec

            # a fresh instance per store: fsspec's instance cache would keep an endpoint read earlier
            self._fs = fsspec.filesystem("file" if self.local else self.protocol, skip_instance_cache=True)
        return self._fs

    # -- names ------------------------------------------------------------------------------

    def join(self, rel: str = "") -> str:
        """The filesystem path of ``rel`` (without the scheme)."""
        return f"{self.root}/{rel}" if rel else self.root

    def display(self, rel: str = "") -> str:
        """``rel`` as a user sees it (a path, or a URL)."""
        return f"{self.url}/{rel}" if rel else self.url

    def local_path(self, rel: str = "") -> Path:
        assert self.local, f"{self.url} is not a local path"
        return Path(self.join(rel))

    def child(self, rel: str) -> "Store":
        return Store(self.display(rel))

    # -- reading ----------------------------------------------------------------------------

    def exists(self, rel: str = "") -> bool:
        if self.local:
            return self.local_path(rel).exists()
        return bool(self.fs.exists(self.join(rel)))

    def is_empty(self) -> bool:
        """True when the root holds nothing (or does not exist)."""
        if self.local:
            p = self.local_path()
            return not p.exists() or not any(p.iterdir())
        self.fs.invalidate_cache()
        try:
            return not self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            return True

    def read_bytes(self, rel: str) -> bytes:
        if self.local:
            return self.local_path(rel).read_bytes()
        return self.fs.cat_file(self.join(rel))

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def glob(self, pattern: str) -> list[str]:
        """Relative paths matching ``pattern`` (fsspec glob, no ``**``), sorted."""
        if self.local:
            base = self.local_path()
            return sorted(p.relative_to(base).as_posix() for p in base.glob(pattern))
        self.fs.invalidate_cache()  # listings are cached by s3fs/gcsfs: another process may have written
        prefix = self.root + "/"
        return sorted(p[len(prefix):] if p.startswith(prefix) else p for p in self.fs.glob(self.join(pattern)))

    def open_read(self, rel: str):
        """A binary file object for reading ``rel``."""
        if self.local:
            return open(self.local_path(rel), "rb")
        return self.fs.open(self.join(rel), "rb")

    # -- writing ----------------------------------------------------------------------------

    def makedirs(self, rel: str = "") -> None:
        if self.local:
            self.local_path(rel).mkdir(parents=True, exist_ok=True)

    def write_bytes(self, rel: str, data: bytes, fsync: bool = False) -> None:
        """Write ``rel`` so that readers see the old content or the whole new one."""
        if not self.local:
            self.fs.pipe_file(self.join(rel), data)  # one PUT: visible only once complete
            return
        atomic_write_bytes(self.local_path(rel), data, fsync)

    def write_json(self, rel: str, obj: Any, fsync: bool = False) -> None:
        self.write_bytes(rel, json.dumps(obj, sort_keys=True, indent=1).encode(), fsync)

    def put_file(self, local: Path, rel: str) -> None:
        """Move the finished local file ``local`` to ``rel``: a rename on a local disk, an upload
        (then the local file is deleted) on an object store.  Either way ``rel`` appears whole."""
        if self.local:
            os.replace(local, self.local_path(rel))
            return
        self.fs.put_file(str(local), self.join(rel))
        Path(local).unlink(missing_ok=True)

    def rm(self, rel: str) -> None:
        if self.local:
            self.local_path(rel).unlink(missing_ok=True)
        else:
            try:
                self.fs.rm_file(self.join(rel))
            except FileNotFoundError:
                pass

    def rm_tree(self) -> None:
        """Delete everything under the root."""
        if self.local:
            shutil.rmtree(self.local_path(), ignore_errors=True)
            return
        self.fs.invalidate_cache()
        paths = self.fs.find(self.root)
        if paths:
            self.fs.rm(paths)

    def scratch_dir(self) -> Path:
        """A local directory for files being written before they are stored (a shard's tar): the
        dataset itself on a disk; for an object store, one directory per store URL under the
        system's temporary directory, so that a file left by a killed build has a fixed name that
        the rerun of its unit overwrites and then removes (not a new name for each attempt)."""
        if self.local:
            return self.local_path()
        key = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / "dav-build-scratch" / key
        path.mkdir(parents=True, exist_ok=True)
        return path


def open_store(url: str | os.PathLike, what: str = "location", must_exist: bool = False) -> Store:
    """A :class:`Store` for ``url``, checked before any work: the scheme must have an installed
    fsspec implementation, and an object store's bucket must answer."""
    store = Store(os.fspath(url))
    if store.local:
        if must_exist and not store.exists():
            raise StorageError(f"{store.url}: {what} does not exist")
        return store
    import fsspec

    try:
        fsspec.get_filesystem_class(store.protocol)
    except (ValueError, ImportError) as exc:
        known = ", ".join(sorted(p for p in fsspec.available_protocols() if p.isalnum() and len(p) <= 5))
        raise StorageError(
            f"{store.url}: {what} uses the scheme {store.protocol}://, which cannot be served here ({exc}). "
            f"Use a local path, file://, or a scheme whose fsspec package is installed (s3:// needs s3fs, "
            f"gs:// needs gcsfs; fsspec knows: {known})"
        ) from None
    bucket = store.root.split("/", 1)[0]
    try:
        ok = store.fs.exists(bucket)
    except Exception as exc:  # unreachable endpoint, refused credentials...
        raise StorageError(f"{store.url}: cannot reach the object store: {type(exc).__name__}: {exc}") from None
    if not ok:
        raise StorageError(f"{store.url}: bucket {bucket!r} does not exist (or is not visible with these credentials)")
    if must_exist and not store.exists():
        raise StorageError(f"{store.url}: {what} does not exist")
    return store


def stage_tree(url: str, dest: Path, metadata_only: bool = False) -> Path:
    """Download the file or directory ``url`` to ``dest`` (which it becomes); with
    ``metadata_only``, download only small metadata files and leave empty placeholders for the
    rest (enough for the readers to recognise a layout)."""
    store = Store(url)
    fs = store.fs
    fs.invalidate_cache()
    if fs.isfile(store.root):
        dest.parent.mkdir(parents=True, exist_ok=True)
        if metadata_only and not store.root.endswith(METADATA_SUFFIXES):
            dest.write_bytes(b"")
        else:
            fs.get_file(store.root, str(dest))
        return dest
    prefix = store.root + "/"
    dest.mkdir(parents=True, exist_ok=True)
    for path in fs.find(store.root):
        rel = path[len(prefix):] if path.startswith(prefix) else Path(path).name
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if metadata_only and not path.endswith(METADATA_SUFFIXES):
            target.write_bytes(b"")
        else:
            fs.get_file(path, str(target))
    return dest


def local_copy(url: str | os.PathLike, rels: list[str] | None = None, dest: Path | None = None) -> Path:
    """A local directory holding ``rels`` of the dataset at ``url`` (all of it when None).

    A local path is returned as it is; a URL is downloaded into ``dest`` (default: a directory
    under the system's temporary directory named after the URL); files already there are not
    downloaded again."""
    store = open_store(url, "dataset", must_exist=True)
    if store.local:
        return store.local_path()
    import hashlib

    if dest is None:
        dest = Path(tempfile.gettempdir()) / "dav-datasets" / hashlib.sha1(store.url.encode()).hexdigest()[:16] / \
            Path(store.root).name
    if rels is None:
        prefix = store.root + "/"
        store.fs.invalidate_cache()
        rels = [p[len(prefix):] for p in store.fs.find(store.root) if p.startswith(prefix)]
    for rel in rels:
        target = dest / rel
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        store.fs.get_file(store.join(rel), str(tmp))
        os.replace(tmp, target)
    return dest


def local_dataset(location: str | os.PathLike, what: str = "kept") -> Path:
    """A local directory for reading the dataset at ``location``: the path itself, or for a URL a
    local copy of ``what`` it holds: ``manifest`` (manifest, stats, build state), ``kept`` (also
    every shard that holds a kept clip) or ``all``."""
    text = os.fspath(location)
    if not is_url(text):
        path = Path(text.removeprefix("file://"))
        if not path.is_dir():
            raise StorageError(f"{path}: dataset directory does not exist")
        return path
    store = open_store(text, "dataset", must_exist=True)
    if not store.exists("manifest.parquet"):
        raise StorageError(f"{store.display('manifest.parquet')}: no manifest; is {store.url} a dataset written by dav-build?")
    import hashlib

    # the cache is named after the URL and the manifest's content: a dataset rebuilt at the same URL
    # is copied again, never mixed with an older copy
    digest = hashlib.sha1(store.url.encode() + store.read_bytes("manifest.parquet")).hexdigest()[:16]
    dest = Path(tempfile.gettempdir()) / "dav-datasets" / digest / Path(store.root).name
    rels = [r for r in ("manifest.parquet", "stats.json", "_state/build.json") if store.exists(r)]
    local_copy(text, rels, dest)
    if what == "all":
        local_copy(text, None, dest)
    elif what == "kept":
        from dav_builder.shards.manifest import kept_shards

        shards = sorted({s for group in kept_shards(dest).values() for s in group})
        local_copy(text, shards, dest)
    return dest


def atomic_write_bytes(path: Path, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to the local ``path`` so that readers see the old file or the whole new one.

    The rename alone survives a killed process; ``fsync`` also survives a power loss."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
