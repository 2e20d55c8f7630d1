"""A lake in an fsspec memory filesystem private to the instance, for unit tests and notebook demos."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from fsspec.implementations.memory import MemoryFileSystem
from qframe.research.data_lake.storage.base import DataLakeStorage


class MemoryStorage(DataLakeStorage):
    """An in-memory lake private to this instance (unit tests, notebooks demos)."""

    def __init__(self, *, io_threads: int = 1) -> None:
        self._label = f"lake-{uuid.uuid4().hex[:8]}"
        super().__init__(MemoryFileSystem(global_store=False, skip_instance_cache=True), "/lake", io_threads=io_threads)
        self._lock = threading.RLock()

    @property
    def url(self) -> str:
        return f"memory://{self._label}"

    def _write(self, path: str, data: bytes, *, exclusive: bool) -> None:
        with self._lock:
            super()._write(path, data, exclusive=exclusive)

    def _swap_manifest(self, path: str, data: bytes, *, expected: str | None) -> None:
        with self._lock:  # re-entrant: the swap's own _write takes it again
            super()._swap_manifest(path, data, expected=expected)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
