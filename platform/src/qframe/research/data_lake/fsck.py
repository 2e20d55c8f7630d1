"""Consistency check of a lake against its catalog, in both directions, and the repairs ``--repair`` makes.

Problems found (one :class:`Finding` each):

* ``missing-data`` - a catalog entry whose lake version (or quarantine object) is gone;
* ``mismatch`` - a catalog entry whose lake data differs from what was registered (manifest checksum, or a
  file that no longer matches its manifest);
* ``orphan`` - a committed lake version the catalog does not list (a writer that died, or lost the
  catalog, between commit and registration);
* ``dead-attempt`` - an ``attempt-*`` directory no manifest references, whose writer is provably dead (its
  lease names this host and a process that is gone, or it holds data but no lease) or that is older than
  ``stale_after`` (writers on other hosts cannot be checked from here).

Repairs, and why each is the safe one:

* orphan -> registered (RAW, tag ``fsck.adopted``) once all its files verify: the data is complete and
  committed, deleting it would lose it; an orphan whose files do not verify is left and reported;
* missing-data -> the entry is removed when nothing derives from it (it can never be read again), else
  quarantined with an ``fsck.problem`` tag so the lineage of its children stays intact;
* mismatch -> quarantined with an ``fsck.problem`` tag, data kept: the registered content is gone and
  which side is "right" is for a person to decide (rewrite from source, or register a new version);
* dead-attempt -> removed (no manifest references it, and its writer will never commit it).

Catalog entries located outside this lake are skipped (counted), never judged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

import pandas as pd
import structlog
from qframe.research.data_lake.catalog import (
    PROBLEM_TAG,
    CatalogError,
    DataCatalog,
    DataQuality,
    DatasetMetadata,
    DatasetType,
)
from qframe.research.data_lake.feature_store import FEATURE_PREFIX
from qframe.research.data_lake.storage import DataLakeStorage, ObjectNotFound, StorageError, StorageMetadata
from qframe.research.data_lake.storage.scan import (
    AttemptInfo,
    attempts,
    committed_manifest,
    remove_attempt,
    verify_version,
    version_dirs,
)
from qframe.research.data_lake.storage.writer_lease import WriterState
from qframe.research.data_lake.storage_layout import version_dir

log = structlog.get_logger(__name__)

Kind = Literal["missing-data", "mismatch", "orphan", "dead-attempt"]
ADOPTED_TAG: Final = "fsck.adopted"
DEFAULT_STALE_AFTER: Final = pd.Timedelta(hours=24)
# An orphan this young may belong to a writer that is registering it right now: repair leaves it alone.
DEFAULT_ORPHAN_GRACE: Final = pd.Timedelta(minutes=5)


@dataclass
class Finding:
    kind: Kind
    name: str
    version: str
    detail: str
    repair: str | None = None  # what --repair did, or why it could not
    fixed: bool = False
    attempt: AttemptInfo | None = field(default=None, repr=False)
    manifest: StorageMetadata | None = field(default=None, repr=False)


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    entries_checked: int = 0
    versions_checked: int = 0
    attempts_checked: int = 0
    entries_elsewhere: int = 0  # catalog entries located outside this lake: not judged
    entries_marked: int = 0  # quarantined by an earlier repair (fsck.problem tag)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if not f.fixed]


Progress = Callable[[str, int, int], None]  # (stage, done, total)


def _no_progress(_stage: str, _done: int, _total: int) -> None:
    return None


def check(
    storage: DataLakeStorage,
    catalog: DataCatalog,
    *,
    verify_files: bool = True,
    stale_after: pd.Timedelta = DEFAULT_STALE_AFTER,
    progress: Progress = _no_progress,
) -> Report:
    """Finds every problem listed in the module docstring; changes nothing."""
    report = Report()
    entries = catalog.search_sync()
    registered = {(e.name, e.version) for e in entries}
    lake_root = storage.url.rstrip("/") + "/"
    for index, entry in enumerate(entries, 1):
        progress("catalog entries", index, len(entries))
        if not entry.location.startswith(lake_root):
            report.entries_elsewhere += 1
            continue
        if PROBLEM_TAG in entry.tags:
            report.entries_marked += 1  # quarantined by an earlier repair: known, not a new problem
            continue
        report.entries_checked += 1
        finding = _check_entry(storage, entry, verify_files=verify_files)
        if finding is not None:
            report.findings.append(finding)

    dirs = list(version_dirs(storage))
    now = pd.Timestamp.now(tz="UTC")
    for index, (name, version) in enumerate(dirs, 1):
        progress("lake versions", index, len(dirs))
        manifest = committed_manifest(storage, name, version)
        if manifest is not None:
            report.versions_checked += 1
            if (name, version) not in registered:
                report.findings.append(
                    Finding(
                        "orphan",
                        name,
                        version,
                        f"committed in the lake ({manifest.row_count:,} rows, {manifest.checksum}), not in the catalog",
                        manifest=manifest,
                    )
                )
        for info in attempts(storage, name, version):
            report.attempts_checked += 1
            if info.referenced or info.writer is WriterState.ALIVE:
                continue
            stale = info.started is not None and now - info.started > stale_after
            if info.writer is WriterState.DEAD or stale:
                why = "its writer is gone" if info.writer is WriterState.DEAD else f"older than {stale_after}"
                report.findings.append(
                    Finding(
                        "dead-attempt",
                        name,
                        version,
                        f"{info.attempt}: {info.size_bytes:,} bytes no manifest references; {why}",
                        attempt=info,
                    )
                )
    return report


def _check_entry(storage: DataLakeStorage, entry: DatasetMetadata, *, verify_files: bool) -> Finding | None:
    vdir_uri = storage.uri(version_dir(entry.name, entry.version))
    if entry.location != vdir_uri:
        return _check_object_entry(storage, entry)
    manifest = committed_manifest(storage, entry.name, entry.version)
    if manifest is None:
        return Finding("missing-data", entry.name, entry.version, f"no committed lake version at {entry.location}")
    if manifest.checksum != entry.checksum:
        return Finding(
            "mismatch",
            entry.name,
            entry.version,
            f"lake content {manifest.checksum} differs from the registered {entry.checksum}",
        )
    if verify_files:
        problems = verify_version(storage, manifest)
        if problems:
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            return Finding("mismatch", entry.name, entry.version, problems[0] + more)
    return None


def _check_object_entry(storage: DataLakeStorage, entry: DatasetMetadata) -> Finding | None:
    """Entries stored as one object (quarantine files): the object must exist with the registered sha256."""
    key = entry.location[len(storage.url.rstrip("/")) + 1 :]
    try:
        data = storage.get_bytes(key)
    except (ObjectNotFound, StorageError, ValueError):
        return Finding("missing-data", entry.name, entry.version, f"no object at {entry.location}")
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    if digest != entry.checksum:
        return Finding(
            "mismatch", entry.name, entry.version, f"object {digest} differs from registered {entry.checksum}"
        )
    return None


def repair(
    storage: DataLakeStorage,
    catalog: DataCatalog,
    report: Report,
    *,
    orphan_grace: pd.Timedelta = DEFAULT_ORPHAN_GRACE,
    progress: Progress = _no_progress,
) -> None:
    """Applies the repair of each finding (see the module docstring); records what was done on the finding."""
    now = pd.Timestamp.now(tz="UTC")
    for index, finding in enumerate(report.findings, 1):
        progress("repairs", index, len(report.findings))
        if finding.manifest is not None and now - finding.manifest.created_at < orphan_grace:
            finding.repair = (
                f"not registered yet: committed less than {orphan_grace} ago (a writer may be registering it)"
            )
            continue
        try:
            _repair_one(storage, catalog, finding)
        except (CatalogError, StorageError, OSError) as exc:
            finding.repair = f"not repaired: {exc}"
        log.info("fsck.repair", kind=finding.kind, dataset=finding.name, version=finding.version, result=finding.repair)


def _repair_one(storage: DataLakeStorage, catalog: DataCatalog, finding: Finding) -> None:
    stamp = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    if finding.kind == "dead-attempt":
        assert finding.attempt is not None  # noqa: S101 - set for every dead-attempt finding
        if remove_attempt(storage, finding.attempt):
            finding.repair, finding.fixed = f"removed {finding.attempt.size_bytes:,} bytes", True
        else:
            finding.repair, finding.fixed = "kept: a manifest committed since references it", True
        return
    if finding.kind == "orphan":
        assert finding.manifest is not None  # noqa: S101 - set for every orphan finding
        problems = verify_version(storage, finding.manifest)
        if problems:
            finding.repair = f"not registered: its files do not verify ({problems[0]}); delete or rewrite it"
            return
        kind = DatasetType.FEATURES if finding.name.startswith(FEATURE_PREFIX) else DatasetType.RAW_MARKET_DATA
        catalog.register_manifest_sync(
            finding.manifest,
            dataset_type=kind,
            quality_level=DataQuality.RAW,
            tags={ADOPTED_TAG: stamp, **dict(finding.manifest.extra)},
            description="registered by `qframe data fsck --repair`: committed lake version without a catalog entry",
        )
        finding.repair, finding.fixed = f"registered as {kind.value}/raw (files verified; tag {ADOPTED_TAG})", True
        return
    children = catalog.downstream_sync(finding.name, finding.version)
    if finding.kind == "missing-data" and not children:
        catalog.remove_entry_sync(finding.name, finding.version)
        finding.repair, finding.fixed = "catalog entry removed (its data is gone and nothing derives from it)", True
        return
    why = "data missing" if finding.kind == "missing-data" else "lake data differs from the registration"
    catalog.mark_problem_sync(finding.name, finding.version, f"{why} (fsck {stamp}): {finding.detail}")
    kept = f"; {len(children)} derived dataset(s) keep their lineage" if children else "; lake data kept"
    finding.repair, finding.fixed = f"quarantined, tag {PROBLEM_TAG}{kept}", True
