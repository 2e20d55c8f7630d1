"""Data lake: storage backends, catalog, feature store, validation and ingestion (files, synthetic, Kafka).

Names re-exported here are the public API; submodules hold the details. Importing this package
opens no connection, file or server; that happens when a storage, catalog or consumer is built.
"""

from qframe.research.data_lake.catalog import (
    CatalogError,
    DataCatalog,
    DataQuality,
    DatasetAlreadyRegistered,
    DatasetMetadata,
    DatasetNotRegistered,
    DatasetRef,
    DatasetType,
)
from qframe.research.data_lake.feature_store import FeatureStore
from qframe.research.data_lake.ingestion import DataIngestionPipeline, IngestionError
from qframe.research.data_lake.kafka_stream import KafkaBarIngestor, publish_bars, read_ingested
from qframe.research.data_lake.storage import (
    DataLakeStorage,
    DatasetNotFound,
    DatasetVersionExists,
    LocalFileStorage,
    MemoryStorage,
    MinIOStorage,
    S3Storage,
    StorageError,
    StorageMetadata,
    storage_from_url,
)
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.data_lake.validation import MarketDataValidationError, ValidationReport, validate_market_data

__all__ = [
    "CatalogError",
    "DataCatalog",
    "DataIngestionPipeline",
    "DataLakeStorage",
    "DataQuality",
    "DatasetAlreadyRegistered",
    "DatasetMetadata",
    "DatasetNotFound",
    "DatasetNotRegistered",
    "DatasetRef",
    "DatasetType",
    "DatasetVersionExists",
    "FeatureStore",
    "IngestionError",
    "KafkaBarIngestor",
    "LocalFileStorage",
    "MarketDataValidationError",
    "MemoryStorage",
    "MinIOStorage",
    "S3Storage",
    "StorageError",
    "StorageMetadata",
    "ValidationReport",
    "generate_market_data",
    "publish_bars",
    "read_ingested",
    "storage_from_url",
    "validate_market_data",
]
