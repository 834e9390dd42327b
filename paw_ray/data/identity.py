"""What a prepared data set is, by content (docs/data-format.md, "Identity").

``dataset.json`` records each shard's size and SHA-256 as it was written
(``DatasetInfo.content``). ``data_identity`` is what every stage fingerprint holds of the
data, so two data sets with the same names and row counts but other bytes never share a
stage. ``verify_shards`` compares the shards in place with that record before a run reads them:
a shard rewritten since (same name, same rows, other images or labels) stops the run with
the shard named, or, when the user accepts the change, is recorded anew, which changes the
identity and so reruns the stages that read the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from paw_ray import storage
from paw_ray.config import DATA_ON_CHANGE, DATA_VERIFY
from paw_ray.data import shards

__all__ = ["AUTO_HASH_BYTES", "ShardChange", "data_identity", "changed_shards", "verify_shards"]

# verify mode "auto" hashes a data set up to this size, and checks only sizes above it
# ("full": SHA-256 of every shard whatever the size; "size": sizes only)
AUTO_HASH_BYTES = 2 << 30  # hashing 2 GiB takes seconds locally, minutes from a bucket


def data_identity(info: shards.DatasetInfo) -> str:
    """The data's part of a stage fingerprint: all of ``dataset.json``. A data set written
    before content was recorded keeps the identity it had then, so its runs stay reused."""
    record = info.to_json()
    if not record["content"]:
        del record["content"]
    return str(sorted(record.items()))


@dataclass(frozen=True)
class ShardChange:
    """A shard that is not what ``dataset.json`` recorded."""

    path: str  # relative to the data folder
    recorded: dict[str, Any]
    found_bytes: int | None  # None: the file is gone

    def why(self) -> str:
        if self.found_bytes is None:
            return "missing"
        if self.found_bytes != self.recorded["bytes"]:
            return f"{self.found_bytes} bytes, recorded {self.recorded['bytes']}"
        return "same size, other SHA-256"


def changed_shards(data_dir: str, info: shards.DatasetInfo, mode: str = "auto") -> list[ShardChange]:
    """The shards whose size (always) or SHA-256 (``mode``, one of ``config.DATA_VERIFY``) differ
    from ``info.content``; shards without a record are not checked."""
    if mode not in DATA_VERIFY:
        raise ValueError(f"verify mode {mode!r}: one of {DATA_VERIFY}")
    recorded = {rel: info.content[rel] for split in shards.SPLITS for rel in info.files.get(split, [])
                if rel in info.content}
    hashes = mode == "full" or (mode == "auto" and sum(c["bytes"] for c in recorded.values()) <= AUTO_HASH_BYTES)
    changes = []
    for rel, content in recorded.items():
        location = storage.join(data_dir, rel)
        size = storage.file_size(location)
        if size != content["bytes"] or (hashes and storage.sha256(location) != content["sha256"]):
            changes.append(ShardChange(rel, content, size))
    return changes


def _record(data_dir: str, info: shards.DatasetInfo) -> shards.DatasetInfo:
    """``info`` with the content of every shard as it is now, written as ``dataset.json``."""
    info.content = {rel: {"bytes": storage.file_size(storage.join(data_dir, rel)),
                          "sha256": storage.sha256(storage.join(data_dir, rel))}
                    for split in shards.SPLITS for rel in info.files.get(split, [])}
    shards.write_info(info, data_dir)
    return info


def verify_shards(data_dir: str, info: shards.DatasetInfo, mode: str = "auto", on_change: str = "stop",
                  log: Callable[[str], None] = print) -> shards.DatasetInfo:
    """Check the shards against ``dataset.json`` (``changed_shards``); return the data set's
    info as the run will use it. A change stops with a ``ShardError`` naming each changed
    shard, unless ``on_change`` is "accept": then the shards' content now is recorded (and
    a data set without a record gets one), and the new identity reruns the stages."""
    if on_change not in DATA_ON_CHANGE:
        raise ValueError(f"on_change {on_change!r}: one of {DATA_ON_CHANGE}")
    if not info.content:
        if on_change == "accept":
            listed = sum(len(info.files.get(split, [])) for split in shards.SPLITS)
            log(f"recorded the size and SHA-256 of {listed} shard(s) in {data_dir}, which had none; every stage "
                "that reads the data runs again")
            return _record(data_dir, info)
        log(f"{storage.join(data_dir, shards.DATASET_INFO_FILE)} records no shard sizes or hashes (written by an "
            "older paw_ray): a shard changed in place would go unnoticed. --accept-data-change records them (and "
            "reruns the stages that read the data)")
        return info
    changes = changed_shards(data_dir, info, mode)
    if not changes:
        return info
    named = "; ".join(f"{storage.join(data_dir, c.path)} ({c.why()})" for c in changes[:5])
    more = f"; and {len(changes) - 5} more" if len(changes) > 5 else ""
    if on_change == "accept" and all(c.found_bytes is not None for c in changes):
        log(f"{len(changes)} shard(s) changed in place since the data set was written: {named}{more}; recorded them "
            "as they are now, and the stages that read the data run again")
        return _record(data_dir, info)
    if on_change == "accept":
        raise shards.ShardError(f"{data_dir}: shard(s) listed in {shards.DATASET_INFO_FILE} are missing: {named}{more}; "
                                "prepare the data again")
    raise shards.ShardError(
        f"{data_dir}: {len(changes)} shard(s) changed in place since the data set was written: {named}{more}. "
        "A stage trained on the old bytes would be reused for the new ones. Prepare the data again, or rerun "
        "with --accept-data-change to record the shards as they are now and rerun the stages that read them")
