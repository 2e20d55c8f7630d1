"""The async forms of the seed's APIs run their sync twins in a worker thread, with the same arguments."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from qframe.research.data_lake.catalog import DataCatalog
from qframe.research.data_lake.ingestion import DataIngestionPipeline
from qframe.research.data_lake.storage import MemoryStorage
from qframe.research.data_lake.synthetic import generate_market_data
from qframe.research.threaded import in_thread

pytestmark = pytest.mark.unit


class Probe:
    def work_sync(self, value: int, *, scale: int = 1) -> tuple[int, str]:
        """Doubles a value."""
        if value < 0:
            raise ValueError("negative")
        return value * scale, threading.current_thread().name

    work = in_thread(work_sync)


def test_in_thread_passes_arguments_returns_the_result_and_leaves_the_loop_thread() -> None:
    probe = Probe()

    async def main() -> tuple[tuple[int, str], str]:
        return await probe.work(3, scale=2), threading.current_thread().name

    (result, worker), loop_thread = asyncio.run(main())
    assert result == 6
    assert worker != loop_thread
    assert Probe.work.__name__ == "work"
    assert "Doubles a value." in (Probe.work.__doc__ or "")
    assert asyncio.iscoroutinefunction(Probe.work)


def test_in_thread_raises_what_the_sync_method_raises() -> None:
    with pytest.raises(ValueError, match="negative"):
        asyncio.run(Probe().work(-1))


def test_async_ingestion_forms_match_the_sync_ones(tmp_path: Path) -> None:
    storage = MemoryStorage()
    catalog = DataCatalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    other_catalog = DataCatalog(f"sqlite:///{tmp_path / 'other.db'}")
    pipeline = DataIngestionPipeline(storage, catalog)
    bars = generate_market_data(["AAA"], periods=50, freq="1h", seed=4)
    path = tmp_path / "bars.parquet"
    bars.to_parquet(path)

    async def main() -> list[str]:
        synthetic = await pipeline.ingest_market_data("synthetic", ["AAA"], periods=50, name="bars.a", version="v1")
        frame = await pipeline.ingest_frame(bars, name="bars.b", version="v1")
        file = await pipeline.ingest_file(path, name="bars.c", version="v1")
        manifest = storage.manifest("bars.b", "v1")
        again = await other_catalog.register_manifest(
            manifest, dataset_type="raw_market_data", quality_level="validated", tags={"copy": "yes"}
        )
        return [synthetic.checksum, frame.checksum, file.checksum, again.checksum]

    try:
        checksums = asyncio.run(main())
    finally:
        catalog.close()
        other_catalog.close()
    assert len(set(checksums[1:])) == 1  # the same bars by frame, by file, and registered elsewhere
    assert storage.manifest("bars.a", "v1").row_count == 50
