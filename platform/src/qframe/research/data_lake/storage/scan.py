"""What a consistency check needs from a lake beyond reads and writes: every version directory, every attempt
directory with its writer's state, and a full check of a committed version's files.

Used by ``qframe data fsck`` (``data_lake.fsck``); readers and writers never call this.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import pandas as pd
from qframe.research.data_lake.storage.base import DataLakeStorage, DatasetCorrupted, DatasetNotFound, _check_file
from qframe.research.data_lake.storage.writer_lease import LEASE_NAME, WriterState, writer_state
from qframe.research.data_lake.storage_layout import (
    ATTEMPT_PREFIX,
    DATASETS_DIR,
    MANIFEST_NAME,
    StorageError,
    StorageMetadata,
    version_dir,
)

_ATTEMPT_TIME: Final = re.compile(rf"^{ATTEMPT_PREFIX}(\d{{8}}T\d{{6}})-")


@dataclass(frozen=True)
class AttemptInfo:
    """One ``attempt-*`` directory of a version and what is known about the writer that made it."""

    name: str
    version: str
    attempt: str
    referenced: bool  # the committed manifest points at it: never removable
    writer: WriterState  # DEAD also for data without any lease (writers older than leases)
    started: pd.Timestamp | None  # from the attempt's name
    size_bytes: int

    @property
    def key(self) -> str:
        return f"{version_dir(self.name, self.version)}/{self.attempt}"


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _dirs(storage: DataLakeStorage, key: str) -> list[str]:
    try:
        entries = storage.fs.ls(storage._path(key), detail=True)
    except FileNotFoundError:
        return []
    return sorted(_basename(e["name"]) for e in entries if e.get("type") == "directory")


def version_dirs(storage: DataLakeStorage) -> Iterator[tuple[str, str]]:
    """(name, version) of every version directory, committed or not."""
    for name in _dirs(storage, DATASETS_DIR):
        for version in _dirs(storage, f"{DATASETS_DIR}/{name}"):
            yield name, version


def committed_manifest(storage: DataLakeStorage, name: str, version: str) -> StorageMetadata | None:
    vdir = version_dir(name, version)
    try:
        return storage._load_manifest_path(storage._path(f"{vdir}/{MANIFEST_NAME}"), source=vdir)
    except DatasetNotFound:
        return None


def attempts(storage: DataLakeStorage, name: str, version: str) -> list[AttemptInfo]:
    """Every attempt directory of one version."""
    vdir = version_dir(name, version)
    manifest = committed_manifest(storage, name, version)
    referenced = set() if manifest is None else {e.path.split("/", 1)[0] for e in manifest.file_entries}
    found = []
    for attempt in _dirs(storage, vdir):
        if not attempt.startswith(ATTEMPT_PREFIX):
            continue
        path = storage._path(f"{vdir}/{attempt}")
        try:
            files = storage.fs.find(path, detail=True)
        except FileNotFoundError:
            continue
        try:
            state = writer_state(storage.fs.cat_file(f"{path}/{LEASE_NAME}"))
        except FileNotFoundError:
            state = WriterState.DEAD if storage._attempt_writer_gone(path) else WriterState.UNKNOWN
        stamp = _ATTEMPT_TIME.match(attempt)
        found.append(
            AttemptInfo(
                name=name,
                version=version,
                attempt=attempt,
                referenced=attempt in referenced,
                writer=state,
                started=None if stamp is None else pd.Timestamp(stamp.group(1), tz="UTC"),
                size_bytes=sum(int(info.get("size") or 0) for info in files.values()),
            )
        )
    return found


def remove_attempt(storage: DataLakeStorage, info: AttemptInfo) -> bool:
    """Removes an unreferenced attempt; re-reads the manifest first, so a commit since the scan wins."""
    current = committed_manifest(storage, info.name, info.version)
    if current is not None and any(e.path.split("/", 1)[0] == info.attempt for e in current.file_entries):
        return False
    storage._remove_tree(storage._path(info.key))
    return True


def verify_version(storage: DataLakeStorage, manifest: StorageMetadata) -> list[str]:
    """Every file of a committed version checked against its manifest's size and sha256; the problems found."""
    vdir = version_dir(manifest.name, manifest.version)
    problems = []
    for entry in manifest.file_entries:
        try:
            data = storage.fs.cat_file(storage._path(f"{vdir}/{entry.path}"))
            _check_file(entry, bytes(data), manifest, strong=True)
        except FileNotFoundError:
            problems.append(f"file {entry.path} is missing")
        except DatasetCorrupted as exc:
            problems.append(str(exc).split(";", 1)[0])
        except (OSError, StorageError) as exc:
            problems.append(f"file {entry.path} unreadable: {exc}")
    return problems
