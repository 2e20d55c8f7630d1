"""`qframe data stream` without a broker: its options, and bad input refused in one line before any connection."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
from qframe.research.cli import app, data
from qframe.research.data_lake import kafka_stream
from typer.testing import CliRunner

pytestmark = pytest.mark.unit

Invoke = Callable[..., tuple[int, str]]

STREAM_OPTIONS = (
    "--bootstrap",
    "--topic",
    "--group",
    "--dataset",
    "--batch-size",
    "--batch-timeout",
    "--max-idle-seconds",
    "--session-timeout-ms",
    "--no-quarantine",
    "--s3-endpoint-url",
    "--workdir",
    "--lake",
    "--catalog",
)


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    for key in ("QFRAME_LAKE_URL", "QFRAME_CATALOG_URL", "QFRAME_WORKDIR", "QFRAME_S3_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    # Wide enough that rich prints every option name whole.
    runner = CliRunner(env={"COLUMNS": "200"})

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["-q", "data", "stream", *args], catch_exceptions=False)
        return result.exit_code, result.output

    yield invoke
    structlog.reset_defaults()


def _valid(tmp_path: Path, **changes: str) -> list[str]:
    options = {"--bootstrap": "127.0.0.1:9092", "--topic": "bars", "--group": "lake", **changes}
    return [*(item for pair in options.items() for item in pair), "--workdir", str(tmp_path / "w")]


def test_help_lists_every_option(run: Invoke) -> None:
    code, out = run("--help")
    assert code == 0, out
    missing = [option for option in STREAM_OPTIONS if option not in out]
    assert not missing, out
    assert "Consume bars from a Kafka topic" in out


def test_stream_is_listed_among_the_data_commands() -> None:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["data", "--help"])
    assert result.exit_code == 0, result.output
    assert "stream" in result.output


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"--bootstrap": "kafka"}, "--bootstrap 'kafka': 'kafka' is not host:port"),
        ({"--bootstrap": "kafka:9092,broker:http"}, "'broker:http' is not host:port"),
        ({"--bootstrap": "kafka:0"}, "'kafka:0' is not host:port"),
        ({"--topic": "bad topic"}, "--topic 'bad topic': Kafka topic names are 1-249 letters"),
        ({"--dataset": "Not A Name"}, "invalid dataset name 'Not A Name'"),
        ({"--lake": "ftp://host/lake"}, "unsupported lake URL 'ftp://host/lake'"),
    ],
)
def test_bad_input_is_one_plain_line_and_exit_code_2(
    run: Invoke,
    tmp_path: Path,
    change: dict[str, str],
    expected: str,
) -> None:
    code, out = run(*_valid(tmp_path, **change))
    assert code == 2, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    assert expected in errors[0]
    assert "Traceback" not in out


def test_defaults_are_the_consumers_own() -> None:
    defaults = {name: p.default for name, p in inspect.signature(data.stream).parameters.items()}
    assert defaults["batch_size"] == kafka_stream.DEFAULT_BATCH_SIZE
    assert defaults["batch_timeout"] == kafka_stream.DEFAULT_BATCH_TIMEOUT_S
    assert defaults["quarantine"] is True
