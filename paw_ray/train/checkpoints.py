"""Checkpoints are data, never code: saved with ``torch.save`` of tensors and plain
containers, loaded only with ``torch.load(weights_only=True)``, which refuses any
pickled object (a class, a function, a ``__reduce__`` payload) instead of running it.
Written atomically through ``paw_ray.storage``.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import torch

from paw_ray import storage
from paw_ray.errors import PawRayError

__all__ = ["UnsafeCheckpointError", "CheckpointError", "save_state", "load_state", "state_to_bytes",
           "state_from_bytes"]


class CheckpointError(PawRayError):
    """A checkpoint that is missing, truncated or not a paw_ray checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint carrying executable pickled objects: refused, never run."""


def state_to_bytes(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def state_from_bytes(data: bytes, where: str) -> dict[str, Any]:
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{where}: refused — it holds pickled objects other than tensors and plain data "
            f"(weights_only load: {str(e).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise CheckpointError(f"{where}: not a readable checkpoint ({e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{where}: expected a dict of tensors, got {type(state).__name__}")
    return state


def save_state(location: str, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) atomically to ``location``."""
    storage.write_bytes_atomic(location, state_to_bytes(state))


def load_state(location: str) -> dict[str, Any]:
    """Read a checkpoint written by ``save_state``, as data only."""
    if not storage.exists(location):
        raise CheckpointError(f"{location}: checkpoint not found")
    return state_from_bytes(storage.read_bytes(location), location)
