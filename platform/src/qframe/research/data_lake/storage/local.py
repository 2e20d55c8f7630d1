"""A lake on local (or mounted) disk: temp file + fsync + ``os.replace``, ``os.link`` for create-only.

The manifest swap is conditional under an ``flock`` of the version directory: safe for any number of
writer processes on one host (not across hosts sharing a network filesystem without working flock).
"""

from __future__ import annotations

import fcntl
import os
import uuid
from pathlib import Path

from fsspec.implementations.local import LocalFileSystem
from qframe.research.data_lake.storage.base import DEFAULT_IO_THREADS, TMP_PREFIX, DataLakeStorage, ManifestChangedError
from qframe.research.data_lake.storage_layout import LayoutError


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalFileStorage(DataLakeStorage):
    """A lake in a local (or mounted) directory; created if missing."""

    def __init__(self, root: str | Path, *, io_threads: int = DEFAULT_IO_THREADS) -> None:
        path = Path(root).expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise LayoutError(f"lake root {path} exists and is not a directory; pick a directory path")
        path.mkdir(parents=True, exist_ok=True)
        super().__init__(LocalFileSystem(), path.as_posix(), io_threads=io_threads)
        self.root = path

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def _write(self, path: str, data: bytes, *, exclusive: bool) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{target.name}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if exclusive:
                os.link(tmp, target)  # atomic create-if-absent: FileExistsError when the key exists
            else:
                os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(target.parent)

    def _swap_manifest(self, path: str, data: bytes, *, expected: str | None) -> None:
        # Rename is atomic but not conditional: an exclusive flock on the version directory makes
        # compare-then-rename one step for every writer on this host (readers need no lock).
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(dir_fd, fcntl.LOCK_EX)
            current = self._read_manifest_tagged(path)
            if (None if current is None else current[1]) != expected:
                raise ManifestChangedError(path)
            # Manifest temp files are only made under this lock, so any left here are a killed writer's.
            for stray in target.parent.glob(f"{TMP_PREFIX}*"):
                stray.unlink(missing_ok=True)
            self._write(path, data, exclusive=False)
        finally:
            os.close(dir_fd)  # releases the lock
