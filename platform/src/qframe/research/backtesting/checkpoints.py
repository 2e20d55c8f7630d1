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
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import pandas as pd

if TYPE_CHECKING:
    from qframe.research.backtesting.types import MarketData
    from qframe.research.data_lake.storage import DataLakeStorage

CHECKPOINT_PREFIX = "checkpoints"
CHECKPOINT_SUFFIX = ".parquet"
# What a sweep is (strategies, datasets, task count), written once beside its checkpoints for `qframe sweeps list`.
SWEEP_MANIFEST = "_sweep.json"
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

    def describe(self, *, strategies: Sequence[str], datasets: Sequence[str], n_tasks: int) -> None:
        """Writes the sweep's manifest once; checkpoints alone do not say how many tasks make the whole sweep."""
        key = f"{self.directory}/{SWEEP_MANIFEST}"
        if self.storage.exists(key):
            return
        manifest = {"strategies": sorted(strategies), "datasets": sorted(datasets), "n_tasks": n_tasks}
        try:
            self.storage.put_bytes(key, json.dumps(manifest, sort_keys=True).encode(), overwrite=True)
        except Exception as exc:
            raise CheckpointError(f"could not write the sweep manifest {key!r}: {exc}") from exc

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


@dataclass(frozen=True)
class SweepCheckpointSet:
    """One sweep's checkpoints in the lake, as ``qframe sweeps list`` shows them."""

    sweep_id: str
    strategies: tuple[str, ...]
    datasets: tuple[str, ...]  # empty when the sweep predates manifests
    tasks_done: int
    tasks_total: int | None  # None when the sweep predates manifests
    size_bytes: int
    modified: pd.Timestamp | None


def list_checkpoint_sets(storage: DataLakeStorage, *, prefix: str = CHECKPOINT_PREFIX) -> list[SweepCheckpointSet]:
    """Every sweep with checkpoints under ``prefix``, most recently modified first (one listing of the lake)."""
    root = prefix.strip("/") + "/"
    objects: dict[str, list[tuple[str, int, pd.Timestamp | None]]] = {}
    for info in storage.list_objects(root):
        sweep_id, _, name = info.key[len(root) :].partition("/")
        if name and "/" not in name:
            objects.setdefault(sweep_id, []).append((name, info.size, info.modified))
    sets = []
    for sweep_id, files in objects.items():
        tasks = [name[: -len(CHECKPOINT_SUFFIX)] for name, _, _ in files if name.endswith(CHECKPOINT_SUFFIX)]
        manifest: dict[str, object] = {}
        if any(name == SWEEP_MANIFEST for name, _, _ in files):
            manifest = json.loads(storage.get_bytes(f"{root}{sweep_id}/{SWEEP_MANIFEST}"))
        # Task ids are '<strategy>-<digest>', so an old sweep without a manifest still names its strategies.
        strategies = _names(manifest.get("strategies")) or tuple(sorted({task.rpartition("-")[0] for task in tasks}))
        stamps = [modified for _, _, modified in files if modified is not None]
        total = manifest.get("n_tasks")
        sets.append(
            SweepCheckpointSet(
                sweep_id=sweep_id,
                strategies=strategies,
                datasets=_names(manifest.get("datasets")),
                tasks_done=len(tasks),
                tasks_total=total if isinstance(total, int) else None,
                size_bytes=sum(size for _, size, _ in files),
                modified=max(stamps) if stamps else None,
            )
        )
    epoch = pd.Timestamp(0, tz="UTC")
    return sorted(sets, key=lambda s: (s.modified or epoch, s.sweep_id), reverse=True)


def _names(value: object) -> tuple[str, ...]:
    return tuple(str(item) for item in value) if isinstance(value, list) else ()


def delete_checkpoint_set(storage: DataLakeStorage, sweep_id: str, *, prefix: str = CHECKPOINT_PREFIX) -> None:
    """Deletes one sweep's checkpoints (a rerun of that sweep then computes every task again)."""
    if not _SAFE_ID.match(sweep_id):
        raise ValueError(f"sweep id {sweep_id!r} is not a sweep id (see `qframe sweeps list`)")
    storage.delete_prefix(f"{prefix.strip('/')}/{sweep_id}/")
