"""The one redaction function: every credential form it must mask, and what it must leave readable."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import structlog
from qframe.research.redaction import forget_secrets, redact, redact_event, remember_secret, remember_secrets_in_url

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("postgresql+psycopg://qframe:Pw-123x@db:5432/catalog", "Pw-123x", "postgresql+psycopg://qframe:***@db:5432"),
        ("postgresql://user:p@ss:w0rd@db/x", "ss:w0rd", "postgresql://user:***@db/x"),  # raw '@' in the password
        ("https://user:ghTOKEN42@mlflow.example:443/", "ghTOKEN42", "https://user:***@mlflow.example"),
        ("https://ghTOKEN42@mlflow.example/", "ghTOKEN42", "https://***@mlflow.example/"),  # a lone token as user
        ("redis://:onlyPW99@cache:6379/0", "onlyPW99", "redis://:***@cache:6379/0"),
        ("s3://AKIAXX:SeCrEt99@bucket/prefix", "SeCrEt99", "s3://AKIAXX:***@bucket/prefix"),
        ("http://127.0.0.1:5000/?password=QPW1&x=1", "QPW1", "?password=***&x=1"),
        ("http://h/?a=1&token=QTOK2", "QTOK2", "&token=***"),
        ("http://h/?secret=QSEC3;b=2", "QSEC3", "?secret=***;b=2"),
        ("http://h/?X-Amz-Signature=abcdef0123&X-Amz-Credential=AKIA/1", "abcdef0123", "X-Amz-Signature=***"),
        ("host=db user=u password=libpqPW4 dbname=x", "libpqPW4", "host=db user=u password=*** dbname=x"),
        ('{"catalog_url": "x", "api_key": "KEY5555"}', "KEY5555", '"api_key": "***"'),
        ("{'aws_secret_access_key': 'AWS6666'}", "AWS6666", "'aws_secret_access_key': '***'"),
        ("Authorization: Bearer eyJhbGciOi.JIUzI1", "eyJhbGciOi", "Authorization:"),
    ],
)
def test_every_credential_form_is_masked(text: str, secret: str, kept: str) -> None:
    out = redact(text)
    assert secret not in out
    assert kept in out


@pytest.mark.parametrize(
    "text",
    [
        "sqlite:////home/u/.qframe/catalog.db",
        "s3://bucket/secret-data/file.parquet",
        "http://127.0.0.1:5000",
        'password authentication failed for user "qframe"',
        "botocore.exceptions.NoCredentialsError: Unable to locate credentials",
        "file:///tmp/lake/datasets/bars.x/v1",
    ],
)
def test_ordinary_text_stays_as_it_is(text: str) -> None:
    assert redact(text) == text


def test_remembered_secrets_are_masked_wherever_they_appear() -> None:
    remember_secrets_in_url("postgresql://u:s3cr%40tPW@h/db?sslpassword=QQ1234")
    out = redact("connect failed with s3cr@tPW, encoded s3cr%40tPW, and QQ1234 in some other message")
    assert "s3cr@tPW" not in out
    assert "s3cr%40tPW" not in out
    assert "QQ1234" not in out
    remember_secret("abc")  # too short to mask without mangling ordinary words
    assert redact("abc") == "abc"


def test_structlog_processor_redacts_values_and_tracebacks() -> None:
    out = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.format_exc_info, redact_event, structlog.dev.ConsoleRenderer(colors=False)],
        logger_factory=structlog.PrintLoggerFactory(out),
    )
    try:
        log = structlog.get_logger()
        log.info("connect", url="postgresql://u:LogPW777@h/db", nested={"uri": "https://TOK8888@h"})
        try:
            raise RuntimeError("cannot reach https://u:ExcTOK999@h")
        except RuntimeError:
            log.exception("failed")
    finally:
        structlog.reset_defaults()
    text = out.getvalue()
    for secret in ("LogPW777", "TOK8888", "ExcTOK999"):
        assert secret not in text
    assert "RuntimeError" in text
