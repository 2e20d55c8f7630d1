"""Data lake: storage backends, catalog, feature store, validation and ingestion (re-exports come at integration)."""
