"""What the fault tests need to know about this machine's processes, read from /proc: who is
whose parent, what a process runs, what its environment holds. Processes that vanish while
they are read are skipped."""

from __future__ import annotations

import os


def pids() -> list[int]:
    """Every process on this machine but this one."""
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) != os.getpid()]


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def descendants(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    parents = {p: parent_of(p) for p in pids()}
    out, frontier = [pid], [pid]
    while frontier:
        frontier = [c for c, p in parents.items() if p in frontier]
        out += frontier
    return out


def runs(pid: int, prefix: str) -> bool:
    """Whether ``pid``'s command line starts with ``prefix`` (a Ray worker's title, ``ray::<name>``)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().startswith(prefix.encode())
    except OSError:
        return False


def has_env(pid: int, entry: str) -> bool:
    """Whether ``pid``'s environment holds ``entry`` (``NAME=value``)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return entry.encode() in f.read().split(b"\0")
    except OSError:
        return False
