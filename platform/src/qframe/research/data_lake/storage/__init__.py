"""Data lake storage: partitioned Parquet datasets with atomic, immutable versions over any fsspec filesystem.

One implementation (:class:`DataLakeStorage`, in ``base``) does all the work over an fsspec filesystem;
the backends only build that filesystem and say how to put one object atomically:

* :class:`LocalFileStorage` (``local``) - local disk; temp file + fsync + ``os.replace`` (``os.link`` for
  create-only);
* :class:`S3Storage` / :class:`MinIOStorage` (``s3``) - s3fs; an object PUT is atomic, create-only uses
  ``If-None-Match: *``; every PUT carries the server-side encryption header chosen at construction;
* :class:`MemoryStorage` (``memory``) - an fsspec memory filesystem private to the instance, for unit tests.

The path and manifest rules themselves are pure functions in ``data_lake.storage_layout``.
"""

from qframe.research.data_lake.storage.base import (
    DataLakeStorage,
    DatasetCorrupted,
    DatasetNotFound,
    DatasetVersionExists,
    ObjectExists,
    ObjectNotFound,
)
from qframe.research.data_lake.storage.from_url import storage_from_url
from qframe.research.data_lake.storage.local import LocalFileStorage
from qframe.research.data_lake.storage.memory import MemoryStorage
from qframe.research.data_lake.storage.parquet import parquet_bytes
from qframe.research.data_lake.storage.s3 import Encryption, MinIOStorage, S3Storage, minio_endpoint_url
from qframe.research.data_lake.storage_layout import LayoutError, StorageError, StorageMetadata, TimestampLike

__all__ = [
    "DataLakeStorage",
    "DatasetCorrupted",
    "DatasetNotFound",
    "DatasetVersionExists",
    "Encryption",
    "LayoutError",
    "LocalFileStorage",
    "MemoryStorage",
    "MinIOStorage",
    "ObjectExists",
    "ObjectNotFound",
    "S3Storage",
    "StorageError",
    "StorageMetadata",
    "TimestampLike",
    "minio_endpoint_url",
    "parquet_bytes",
    "storage_from_url",
]
