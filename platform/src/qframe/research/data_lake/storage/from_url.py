"""Picks the backend for a lake URL, so settings and command lines can name a lake as one string."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from qframe.research.data_lake.storage.base import DataLakeStorage
from qframe.research.data_lake.storage.local import LocalFileStorage
from qframe.research.data_lake.storage.memory import MemoryStorage
from qframe.research.data_lake.storage.s3 import S3Storage
from qframe.research.data_lake.storage_layout import LayoutError


def storage_from_url(url: str, **options: Any) -> DataLakeStorage:
    """A storage for ``file:///path``, a plain path, ``s3://bucket/prefix`` or ``memory://`` (a fresh one).

    ``options`` go to the backend constructor (e.g. ``endpoint_url``, ``region_name``, keys for S3).
    """
    parts = urlsplit(url)
    if parts.scheme in {"", "file"}:
        if parts.scheme == "file" and parts.netloc not in {"", "localhost"}:
            raise LayoutError(f"file URL {url!r} names host {parts.netloc!r}; use file:///absolute/path")
        path = unquote(parts.path) if parts.scheme == "file" else url
        if not path:
            raise LayoutError("empty lake path; pass file:///absolute/path, s3://bucket/prefix or memory://")
        return LocalFileStorage(path, **options)
    if parts.scheme == "s3":
        return S3Storage(parts.netloc, prefix=parts.path.strip("/"), **options)
    if parts.scheme == "memory":
        return MemoryStorage(**options)
    raise LayoutError(f"unsupported lake URL {url!r}: use file:///absolute/path, s3://bucket/prefix or memory://")
