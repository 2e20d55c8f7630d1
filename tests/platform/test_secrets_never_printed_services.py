"""No CLI run prints a credential (issue 14.5): every URL form, real Postgres for the catalog and MLflow.

Each command runs as a real `qframe` process with debug logs on (-v); everything it writes to stdout and
stderr is searched for every secret value. The same runs check that MLflow on a database store puts its
artifacts under the workdir, not in ./mlruns of the current directory (issue 14.4).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from qframe.research.data_lake.synthetic import generate_market_data
from sqlalchemy.engine import make_url

from tools.services import PostgresService
from tools.services._net import free_port

pytestmark = pytest.mark.services

QFRAME = Path(sys.executable).with_name("qframe")


def token(kind: str) -> str:
    return f"{kind}{secrets.token_hex(6)}"


@pytest.fixture
def databases(postgres: PostgresService) -> Iterator[dict[str, str]]:
    """A catalog database and an MLflow database on the real server, as URLs carrying the real password."""
    names = {role: f"{role}_{uuid.uuid4().hex[:8]}" for role in ("catalog", "mlflow")}
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'CREATE DATABASE "{name}"')
    base = make_url(postgres.url)
    yield {role: base.set(database=name).render_as_string(hide_password=False) for role, name in names.items()}
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Runs:
    """Runs `qframe -vv ...` (debug logs) in a scratch directory and keeps all of its output for the final search."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.outputs: list[str] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("QFRAME_", "MLFLOW_", "AWS_"))}
        self.env["MLFLOW_DISABLE_TELEMETRY"] = "true"

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(QFRAME), "-vv", *args],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=self.cwd,
            env={**self.env, **(env or {})},
        )
        # Only what the process wrote: the command line itself holds the secrets on purpose.
        self.outputs.append(f"--- run {len(self.outputs) + 1}: qframe {args[0]}\n{result.stdout}\n{result.stderr}")
        return result


def test_no_secret_in_any_output(postgres: PostgresService, databases: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    runs = Runs(work)
    workdir = str(tmp_path / "w")
    bars = tmp_path / "bars.parquet"
    generate_market_data(["AAA"], periods=600, freq="1h", seed=1).to_parquet(bars)
    closed = free_port()  # nothing listens here: an unreachable server
    kinds = ("userpw", "lone", "qpw", "qtok", "qsec", "mypw", "downpw", "dsnpw", "lakepw")
    fake = {kind: token(kind) for kind in kinds}
    real = postgres.password
    pg = make_url(postgres.url)
    catalog_userinfo = databases["catalog"]
    # the same real login given as a query parameter instead of userinfo
    catalog_query = f"postgresql+psycopg://{pg.username}@{pg.host}:{pg.port}/{make_url(catalog_userinfo).database}"
    catalog_query += f"?password={real}"
    mlflow_plain = "postgresql://" + databases["mlflow"].split("://", 1)[1]  # the seed's spelling, no driver
    backtest = ["backtest", "-s", "ma_crossover", "-g", "fast=5,10", "-g", "slow=50", "--file", str(bars)]
    backtest += ["--backend", "sequential", "--no-checkpoint", "--workdir", workdir]

    # qframe status: real catalog (userinfo), tracking URIs with userinfo token and secret query parameters
    result = runs(
        "status",
        "--catalog",
        catalog_userinfo,
        "--workdir",
        workdir,
        env={"MLFLOW_TRACKING_URI": f"https://user:{fake['userpw']}@127.0.0.1:{closed}/"},
    )
    assert result.returncode == 0, runs.outputs[-1]
    assert '"catalog_url"' in result.stdout
    result = runs(
        "status",
        "--catalog",
        catalog_query,
        "--workdir",
        workdir,
        env={
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{closed}/?password={fake['qpw']}&token={fake['qtok']}"
            f"&secret={fake['qsec']}"
        },
    )
    assert result.returncode == 0, runs.outputs[-1]

    # CatalogError texts: a down catalog, an unsupported URL, a libpq DSN-style password in a bad URL
    result = runs("data", "list", "--catalog", f"postgresql+psycopg://u:{fake['downpw']}@127.0.0.1:{closed}/x")
    assert result.returncode == 1, runs.outputs[-1]
    result = runs("data", "list", "--catalog", f"mysql://u:{fake['mypw']}@127.0.0.1/x", "--workdir", workdir)
    assert result.returncode == 2, runs.outputs[-1]
    result = runs("data", "list", "--catalog", f"host=db password={fake['dsnpw']}", "--workdir", workdir)
    assert result.returncode == 2, runs.outputs[-1]

    # a lake URL with S3 keys as userinfo (refused before any request: not a bucket name)
    result = runs("status", "--lake", f"s3://AKIAEXAMPLE:{fake['lakepw']}@bucket/prefix", "--workdir", workdir)
    assert result.returncode == 2, runs.outputs[-1]

    # qframe backtest tracking to a real Postgres store, with the password in the URL
    result = runs(*backtest, "--out", str(tmp_path / "out"), "--tracking-uri", mlflow_plain)
    assert result.returncode == 0, runs.outputs[-1]
    assert "MLflow" in result.stdout
    artifacts_in_cwd = (work / "mlruns").exists()
    artifacts_in_workdir = list((tmp_path / "w" / "mlartifacts").rglob("results.parquet"))

    # unreachable https tracking servers, with a password and with a lone token as userinfo
    unreachable: list[tuple[int, bool, bool]] = []
    for uri in (f"https://user:{fake['userpw']}@127.0.0.1:{closed}", f"https://{fake['lone']}@127.0.0.1:{closed}/"):
        result = runs(*backtest, "--out", str(tmp_path / "out2"), "--tracking-uri", uri)
        unreachable.append((result.returncode, "not reachable" in result.stderr, "Traceback" in result.stderr))

    everything = "\n".join(runs.outputs)
    leaked = [name for name, value in {"postgres": real, **fake}.items() if value in everything]
    assert leaked == [], everything[-4000:]
    assert "***" in everything  # the masks are there instead
    assert unreachable == [(1, True, False)] * 2  # one plain error line each, no traceback
    assert not artifacts_in_cwd  # MLflow's ./mlruns default for database stores
    assert artifacts_in_workdir
