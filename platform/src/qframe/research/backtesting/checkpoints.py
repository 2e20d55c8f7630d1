"""Per-task checkpoints of a sweep in the data lake, so an interrupted sweep resumes where it stopped.

Layout: ``<prefix>/<sweep_id>/<task_id>.parquet``, one object per finished task, written with the storage's
atomic ``put_bytes``: a checkpoint either holds a task's complete result frame or does not exist, so a driver
killed mid-write never leaves a half result that a rerun would trust. The sweep id is a digest of everything
that determines the results (task ids, which already cover strategy/params/split/costs, and the content of
every dataset), so a rerun of the same sweep finds its checkpoints and a changed sweep never reuses stale ones.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

import pandas as pd

if TYPE_CHECKING:
    from qframe.research.backtesting.types import MarketData

CHECKPOINT_PREFIX = "checkpoints"
CHECKPOINT_SUFFIX = ".parquet"
SWEEP_ID_LENGTH = 24
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class ObjectStore(Protocol):
    """The four object primitives of ``DataLakeStorage`` that checkpoints need (any lake backend fits)."""

    def put_bytes(self, key: str, data: bytes, *, overwrite: bool = True) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def list_keys(self, prefix: str) -> list[str]: ...


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read back; the message names the key."""


def data_fingerprint(data: MarketData) -> str:
    """sha256 over a dataset's name and arrays: same bars -> same digest, any changed value -> another one."""
    digest = hashlib.sha256(data.name.encode())
    for array in (data.timestamps, data.open, data.high, data.low, data.close, data.volume):
        digest.update(str(array.dtype).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def compute_sweep_id(task_ids: Iterable[str], data_fingerprints: Mapping[str, str]) -> str:
    """Deterministic sweep id from the task ids (order-free) and the dataset fingerprints."""
    digest = hashlib.sha256(b"qframe-sweep-v1\n")
    for task_id in sorted(set(task_ids)):
        digest.update(task_id.encode() + b"\n")
    for name in sorted(data_fingerprints):
        digest.update(f"{name}={data_fingerprints[name]}\n".encode())
    return "sweep-" + digest.hexdigest()[:SWEEP_ID_LENGTH]


def frame_to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def frame_from_parquet_bytes(data: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data))


class SweepCheckpoints:
    """Checkpoints of one sweep: which tasks are finished, their saved frames, and saving new ones."""

    def __init__(self, storage: ObjectStore, sweep_id: str, *, prefix: str = CHECKPOINT_PREFIX) -> None:
        if not _SAFE_ID.match(sweep_id):
            raise ValueError(
                f"sweep id {sweep_id!r} cannot be used as a storage key: use letters, digits, '_', '.', '-' "
                "(at most 128 characters, starting with a letter or digit)"
            )
        self.storage = storage
        self.sweep_id = sweep_id
        self.directory = f"{prefix.strip('/')}/{sweep_id}" if prefix.strip("/") else sweep_id

    def key(self, task_id: str) -> str:
        if not _SAFE_ID.match(task_id):
            raise ValueError(f"task id {task_id!r} cannot be used as a checkpoint key (letters, digits, '_.-' only)")
        return f"{self.directory}/{task_id}{CHECKPOINT_SUFFIX}"

    def completed(self) -> set[str]:
        """Task ids that have a checkpoint (listing once is much cheaper than one ``exists`` per task on S3)."""
        finished: set[str] = set()
        for key in self.storage.list_keys(self.directory + "/"):
            name = key.rsplit("/", 1)[-1]
            if name.endswith(CHECKPOINT_SUFFIX):
                finished.add(name[: -len(CHECKPOINT_SUFFIX)])
        return finished

    def save(self, task_id: str, frame: pd.DataFrame) -> None:
        key = self.key(task_id)
        try:
            self.storage.put_bytes(key, frame_to_parquet_bytes(frame), overwrite=True)
        except Exception as exc:
            raise CheckpointError(f"could not write checkpoint {key!r}: {exc}") from exc

    def load(self, task_id: str) -> pd.DataFrame:
        key = self.key(task_id)
        try:
            return frame_from_parquet_bytes(self.storage.get_bytes(key))
        except Exception as exc:
            raise CheckpointError(
                f"could not read checkpoint {key!r}: {exc}. Delete it to recompute that task."
            ) from exc
