"""One way to read and write run directories and shards, local or remote.

Every path in paw_ray is a *location*: a local path or a URI that pyarrow's
filesystem layer understands (``s3://``, ``gs://``, ``hdfs://``, ``file://``). On a
cluster the run directory and the shards must live where every node reaches them
(a shared file system or a bucket): nothing here assumes the driver's disk.

Writes are atomic: a reader never sees half a file. Locally (and on shared POSIX
file systems) a file is written under a temporary name in the same folder and
renamed into place; object stores make an object visible only once its upload
completes, so there the object is written directly.

On an object store (``s3://``, ``gs://``) the filesystem is made once per bucket for the
process, not once per call (making one may ask the store for the bucket's region). A
transient error of the store (a dropped connection, a 503, throttling) is retried with
backoff after pyarrow's own retries, each retry said on stderr; any other error, or one
that outlasts the retries, is a ``StorageError`` that names the location. An
S3-compatible store other than AWS is reached through ``AWS_ENDPOINT_URL`` (pyarrow reads
it, in every process of the job).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import posixpath
import sys
import threading
import time
import urllib.parse
import uuid
from typing import Any, Callable, TypeVar

import pyarrow.fs as pafs

from paw_ray.errors import PawRayError

__all__ = [
    "resolve",
    "join",
    "is_local",
    "absolute",
    "exists",
    "is_dir",
    "makedirs",
    "listdir",
    "find_files",
    "file_size",
    "sha256",
    "read_bytes",
    "write_bytes_atomic",
    "read_json",
    "write_json_atomic",
    "remove_tree",
    "local_path",
    "StorageError",
    "RETRY_DELAYS_S",
]

# seconds between our tries of a store that gives a transient error (after pyarrow's own)
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 16.0)
# what the AWS SDK and object stores say for errors worth a retry
TRANSIENT_MARKERS = ("NETWORK_CONNECTION", "curlCode", "SlowDown", "ServiceUnavailable", "Service Unavailable",
                     "503", "Throttl", "RequestTimeout", "InternalError", "Connection reset")
_BUCKET_SCHEMES = ("s3", "gs", "gcs")  # one filesystem per bucket; a path inside it is bucket/key
# where a bucket's store is and who asks it, read from the environment when its filesystem is
# made: a filesystem is kept per bucket and per these settings, so a process pointed at another
# endpoint (another S3-compatible server) or other credentials never reuses the old one
_STORE_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_REGION",
              "AWS_DEFAULT_REGION", "GOOGLE_APPLICATION_CREDENTIALS")
_filesystems: dict[tuple, pafs.FileSystem] = {}
_filesystems_lock = threading.Lock()

T = TypeVar("T")


class StorageError(PawRayError, OSError):
    """A store that refused an operation, or did not answer through every retry."""


def _transient(error: OSError) -> bool:
    return any(marker in str(error) for marker in TRANSIENT_MARKERS)


def _on_store(what: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Retry the wrapped call on a remote location's transient errors (``RETRY_DELAYS_S``);
    turn any other store error into a ``StorageError`` naming the location and ``what`` was
    done. A missing file stays ``FileNotFoundError``, which callers handle."""

    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def call(location: str, *args, **kwargs) -> T:
            if is_local(location):
                return fn(location, *args, **kwargs)
            attempt = 1
            while True:
                try:
                    return fn(location, *args, **kwargs)
                except FileNotFoundError:
                    raise
                except OSError as e:
                    if attempt > len(RETRY_DELAYS_S) or not _transient(e):
                        tries = f" after {attempt} tries" if attempt > 1 else ""
                        raise StorageError(f"{location}: {what} failed{tries}: {e}") from None
                    delay = RETRY_DELAYS_S[attempt - 1]
                    attempt += 1
                    print(f"paw_ray storage: {location}: {what}: the store did not answer ({str(e)[:160]}); "
                          f"try {attempt} of {len(RETRY_DELAYS_S) + 1} in {delay:g} s", file=sys.stderr, flush=True)
                    time.sleep(delay)

        return call

    return wrap


def is_local(location: str) -> bool:
    return "://" not in location or location.startswith("file://")


def local_path(location: str) -> str:
    """The absolute local path of a local location (``file://`` stripped)."""
    if location.startswith("file://"):
        location = location[len("file://") :]
    return os.path.abspath(os.path.expanduser(location))


def absolute(location: str) -> str:
    """A local location as an absolute path, a URI as it is: Ray tasks and Train workers run
    in other folders (other nodes, a job's working dir), where a relative path would name a
    different place."""
    return local_path(location) if is_local(location) else location


def resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and the path inside it for ``location``; on an object store the
    bucket's filesystem is made on first use and kept for the process (per ``_STORE_ENV``)."""
    if is_local(location):
        return pafs.LocalFileSystem(), local_path(location)
    parts = urllib.parse.urlsplit(location)
    if parts.scheme not in _BUCKET_SCHEMES:
        return pafs.FileSystem.from_uri(location)
    key = (parts.scheme, parts.netloc, parts.query, *(os.environ.get(k) for k in _STORE_ENV))
    with _filesystems_lock:
        fs = _filesystems.get(key)
        if fs is None:
            fs, path = pafs.FileSystem.from_uri(location)
            _filesystems[key] = fs
            return fs, path
    return fs, (parts.netloc + parts.path).rstrip("/")


def join(location: str, *parts: str) -> str:
    if is_local(location):
        return os.path.join(local_path(location), *parts)
    return posixpath.join(location, *parts)


@_on_store("looking it up")
def exists(location: str) -> bool:
    fs, path = resolve(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


@_on_store("looking it up")
def is_dir(location: str) -> bool:
    fs, path = resolve(location)
    return fs.get_file_info(path).type == pafs.FileType.Directory


@_on_store("looking it up")
def is_file(location: str) -> bool:
    fs, path = resolve(location)
    return fs.get_file_info(path).type == pafs.FileType.File


@_on_store("making the folder")
def makedirs(location: str) -> None:
    fs, path = resolve(location)
    fs.create_dir(path, recursive=True)


@_on_store("listing it")
def listdir(location: str) -> list[str]:
    """Names (not paths) directly inside ``location``; empty if it does not exist."""
    fs, path = resolve(location)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    return sorted(posixpath.basename(i.path.rstrip("/")) for i in infos)


@_on_store("listing it")
def find_files(location: str, suffixes: tuple[str, ...]) -> list[str]:
    """Every file under the folder ``location``, recursively and sorted, whose name ends with
    one of ``suffixes`` (any case), as locations of the same kind; empty if it is no folder."""
    fs, path = resolve(location)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    found = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))
                   if i.type == pafs.FileType.File and i.path.lower().endswith(suffixes))
    if is_local(location):  # in the form given: a relative folder gives relative paths
        return [os.path.join(location, os.path.relpath(p, path)) for p in found]
    scheme = location.split("://", 1)[0]
    return [f"{scheme}://{p}" for p in found]


@_on_store("looking it up")
def file_size(location: str) -> int | None:
    """The size of the file at ``location`` in bytes; None if there is no file there."""
    fs, path = resolve(location)
    info = fs.get_file_info(path)
    return info.size if info.type == pafs.FileType.File else None


@_on_store("reading it")
def sha256(location: str, chunk_bytes: int = 8 << 20) -> str:
    """The SHA-256 of the file at ``location``, read in chunks (a shard need not fit in memory)."""
    fs, path = resolve(location)
    digest = hashlib.sha256()
    with fs.open_input_stream(path) as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


@_on_store("reading it")
def read_bytes(location: str) -> bytes:
    fs, path = resolve(location)
    with fs.open_input_stream(path) as f:
        return f.read()


@_on_store("writing it")
def write_bytes_atomic(location: str, data: bytes) -> None:
    """Write ``data`` so that ``location`` holds either the old or the new bytes, never a mix."""
    fs, path = resolve(location)
    parent = posixpath.dirname(path) if not is_local(location) else os.path.dirname(path)
    fs.create_dir(parent, recursive=True)
    if not is_local(location):
        with fs.open_output_stream(path) as f:
            f.write(data)
        return
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_json(location: str) -> Any:
    """Parse the JSON file at ``location``; a clear error names a corrupted file."""
    raw = read_bytes(location)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{location}: not valid JSON ({e}); the file is corrupted") from None


def write_json_atomic(location: str, obj: Any) -> None:
    write_bytes_atomic(location, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode("utf-8"))


@_on_store("removing it")
def remove_tree(location: str) -> None:
    fs, path = resolve(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif info.type == pafs.FileType.File:
        fs.delete_file(path)
