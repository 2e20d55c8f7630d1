"""Feature store: versioned feature frames in the lake, registered in the catalog.

Feature group ``g`` is dataset ``features.g`` (type FEATURES). The catalog is the source of truth for
which versions exist ("latest" = most recently registered); the lake holds the data. A store runs
check catalog -> write version -> register, and every step is idempotent: storing exactly the same frame
again (a retry after any failure) adopts what the first attempt committed, in the lake and in the catalog.

Nothing the catalog may reference is ever deleted to undo a failed registration. When the catalog cannot
say whether the registration committed (connection lost), the lake version stays: the retry registers
it, or ``qframe data fsck --repair`` does. Only a version provably referenced by nobody - the catalog
holds that (name, version) pointing at another location - is removed again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import pandas as pd
import structlog
from qframe.research.data_lake.catalog import (
    CatalogError,
    CatalogUnavailable,
    DataCatalog,
    DataQuality,
    DatasetAlreadyRegistered,
    DatasetMetadata,
    DatasetNotRegistered,
    DatasetRef,
    DatasetType,
)
from qframe.research.data_lake.storage import DataLakeStorage, DatasetVersionExists, StorageError, StorageMetadata
from qframe.research.data_lake.storage_layout import (
    LATEST,
    SYMBOL_COLUMN,
    LayoutError,
    TimestampLike,
    check_dataset_name,
    check_version,
    version_dir,
)
from qframe.research.threaded import in_thread

__all__ = ["FEATURE_PREFIX", "FeatureStore", "feature_dataset_name"]

log = structlog.get_logger(__name__)

FEATURE_PREFIX: Final = "features."
TIME_COLUMN: Final = "timestamp"


def feature_dataset_name(feature_group: str) -> str:
    """``features.<group>``, checked against the dataset name rules."""
    if not isinstance(feature_group, str) or not feature_group:
        raise LayoutError(f"feature_group must be a non-empty string, got {feature_group!r}")
    try:
        return check_dataset_name(f"{FEATURE_PREFIX}{feature_group}")
    except LayoutError:
        raise LayoutError(
            f"invalid feature group {feature_group!r}: use lowercase letters, digits, '_', '.', '-' (e.g. 'technical')"
        ) from None


def _check_features(df: pd.DataFrame) -> None:
    """Feature frames: timestamp, symbol and at least one numeric feature column, one row per key."""
    if not isinstance(df, pd.DataFrame):
        raise LayoutError(f"features_df must be a pandas DataFrame, got {type(df).__name__}")
    features = [c for c in df.columns if c not in (TIME_COLUMN, SYMBOL_COLUMN)]
    if not features:
        raise LayoutError("features_df has no feature columns besides 'timestamp' and 'symbol'")
    not_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(df[c])]
    if not_numeric:
        raise LayoutError(
            f"feature columns must be numeric; {not_numeric} are not (encode labels as numbers, e.g. with "
            "pd.factorize, or store them as a separate dataset)"
        )
    if TIME_COLUMN in df.columns and SYMBOL_COLUMN in df.columns:
        dupes = df.duplicated([SYMBOL_COLUMN, TIME_COLUMN])
        if dupes.any():
            rows = df.loc[dupes, [SYMBOL_COLUMN, TIME_COLUMN]].head(5).to_dict("records")
            raise LayoutError(f"features_df has duplicate (symbol, timestamp) rows, e.g. {rows}; keep one per key")


class FeatureStore:
    """Stores and reads versioned feature groups through a lake storage and a catalog."""

    def __init__(self, storage: DataLakeStorage, catalog: DataCatalog) -> None:
        self.storage = storage
        self.catalog = catalog

    def __repr__(self) -> str:
        return f"FeatureStore({self.storage!r}, {self.catalog!r})"

    def store_features_sync(
        self,
        feature_group: str,
        features_df: pd.DataFrame,
        version: str,
        description: str = "",
        derived_from: Sequence[DatasetRef] = (),
        *,
        tags: Mapping[str, str] | None = None,
        quality_level: DataQuality = DataQuality.CURATED,
    ) -> DatasetMetadata:
        """Writes one immutable version of a feature group and registers it; the same frame again is a safe retry."""
        name = feature_dataset_name(feature_group)
        check_version(version)
        _check_features(features_df)
        location = self.storage.uri(version_dir(name, version))
        existing = self._registered(name, version)
        if existing is not None and (
            existing.location != location
            or existing.checksum != self.storage.content_checksum_of(features_df, time_column=TIME_COLUMN)
        ):
            raise DatasetAlreadyRegistered(
                f"feature group {feature_group!r} version {version!r} already exists; versions are immutable: "
                "store a new version"
            )
        started = pd.Timestamp.now(tz="UTC")
        try:
            # adopt_identical: a retry finds the version the first attempt committed and registers that.
            manifest = self.storage.write_dataset(
                name,
                features_df,
                version=version,
                time_column=TIME_COLUMN,
                extra={"feature_group": feature_group},
                adopt_identical=True,
            )
        except DatasetVersionExists:
            raise DatasetVersionExists(
                f"the lake {self.storage.url} already holds {name!r} version {version!r} with other data, and the "
                "catalog does not know it (left by a writer that failed before registering, or by another "
                "catalog); register it with `qframe data fsck --repair`, remove it with "
                f"storage.delete_version({name!r}, {version!r}), or store a new version"
            ) from None
        all_tags = {"feature_group": feature_group, **(tags or {})}
        try:
            registered = self.catalog.register_manifest_sync(
                manifest,
                dataset_type=DatasetType.FEATURES,
                quality_level=quality_level,
                tags=all_tags,
                description=description,
                derived_from=derived_from,
            )
        except DatasetAlreadyRegistered:
            if manifest.created_at >= started:  # only what this call wrote; an adopted version predates it
                self._discard_if_unreferenced(manifest)
            raise
        except CatalogUnavailable as exc:
            raise CatalogUnavailable(
                f"{name!r} version {version!r} is committed in the lake {self.storage.url}, but the catalog could "
                f"not confirm its registration: {exc}. The lake data is kept: store the same frame again "
                "(it registers the committed version) or run `qframe data fsck --repair`"
            ) from None
        log.info("features.stored", feature_group=feature_group, version=version, rows=manifest.row_count)
        return registered

    def _registered(self, name: str, version: str) -> DatasetMetadata | None:
        try:
            return self.catalog.get_dataset_sync(name, version)
        except DatasetNotRegistered:
            return None

    def _discard_if_unreferenced(self, manifest: StorageMetadata) -> None:
        """Removes a just-written version only if the catalog's entry for it provably points elsewhere."""
        try:
            other = self.catalog.get_dataset_sync(manifest.name, manifest.version)
        except CatalogError as exc:
            log.warning("features.version_kept", dataset=manifest.name, version=manifest.version, error=str(exc))
            return
        if other.location == manifest.location:
            # The catalog names this very location: whatever it records, the data stays for fsck to judge.
            log.warning("features.version_kept", dataset=manifest.name, version=manifest.version, reason="referenced")
            return
        try:
            self.storage.delete_version(manifest.name, manifest.version)
        except StorageError as cleanup_error:
            log.error(
                "features.orphan_cleanup_failed",
                dataset=manifest.name,
                version=manifest.version,
                error=str(cleanup_error),
            )

    store_features = in_thread(store_features_sync)

    def get_features_sync(  # noqa: PLR0917 - contract signature (seed API)
        self,
        feature_group: str,
        version: str = LATEST,
        symbols: Sequence[str] | None = None,
        start: TimestampLike | None = None,
        end: TimestampLike | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Rows of a feature version ("latest" resolved by the catalog); filters prune lake files."""
        name = feature_dataset_name(feature_group)
        check_version(version, allow_latest=True)
        registered = self.catalog.get_dataset_sync(name, version)
        manifest = self.storage.manifest(name, registered.version)
        if manifest.checksum != registered.checksum:
            raise StorageError(
                f"{name!r} version {registered.version!r} in the lake ({manifest.checksum}) differs from the catalog "
                f"({registered.checksum}); the lake and catalog disagree: check which lake this catalog belongs to"
            )
        return self.storage.read_dataset(
            name, version=registered.version, symbols=symbols, start=start, end=end, columns=columns
        )

    get_features = in_thread(get_features_sync)

    def list_versions(self, feature_group: str) -> list[str]:
        """Registered versions of a feature group, in registration order."""
        return self.catalog.list_versions_sync(feature_dataset_name(feature_group))
