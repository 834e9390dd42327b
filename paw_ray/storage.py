"""One way to read and write run directories and shards, local or remote.

Every path in paw_ray is a *location*: a local path or a URI that pyarrow's
filesystem layer understands (``s3://``, ``gs://``, ``hdfs://``, ``file://``). On a
cluster the run directory and the shards must live where every node reaches them
(a shared file system or a bucket): nothing here assumes the driver's disk.

Writes are atomic: a reader never sees half a file. Locally (and on shared POSIX
file systems) a file is written under a temporary name in the same folder and
renamed into place; object stores make an object visible only once its upload
completes, so there the object is written directly.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import uuid
from typing import Any

import pyarrow.fs as pafs

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
]


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
    """The pyarrow filesystem and the path inside it for ``location``."""
    if is_local(location):
        return pafs.LocalFileSystem(), local_path(location)
    fs, path = pafs.FileSystem.from_uri(location)
    return fs, path


def join(location: str, *parts: str) -> str:
    if is_local(location):
        return os.path.join(local_path(location), *parts)
    return posixpath.join(location, *parts)


def exists(location: str) -> bool:
    fs, path = resolve(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_dir(location: str) -> bool:
    fs, path = resolve(location)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def is_file(location: str) -> bool:
    fs, path = resolve(location)
    return fs.get_file_info(path).type == pafs.FileType.File


def makedirs(location: str) -> None:
    fs, path = resolve(location)
    fs.create_dir(path, recursive=True)


def listdir(location: str) -> list[str]:
    """Names (not paths) directly inside ``location``; empty if it does not exist."""
    fs, path = resolve(location)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    return sorted(posixpath.basename(i.path.rstrip("/")) for i in infos)


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


def file_size(location: str) -> int | None:
    """The size of the file at ``location`` in bytes; None if there is no file there."""
    fs, path = resolve(location)
    info = fs.get_file_info(path)
    return info.size if info.type == pafs.FileType.File else None


def sha256(location: str, chunk_bytes: int = 8 << 20) -> str:
    """The SHA-256 of the file at ``location``, read in chunks (a shard need not fit in memory)."""
    fs, path = resolve(location)
    digest = hashlib.sha256()
    with fs.open_input_stream(path) as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def read_bytes(location: str) -> bytes:
    fs, path = resolve(location)
    with fs.open_input_stream(path) as f:
        return f.read()


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


def remove_tree(location: str) -> None:
    fs, path = resolve(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif info.type == pafs.FileType.File:
        fs.delete_file(path)
