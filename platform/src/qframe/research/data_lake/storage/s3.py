"""Lakes on S3 and MinIO through s3fs: one PUT is atomic, create-only is ``If-None-Match: *``.

The manifest swap is a conditional PUT: ``If-Match: <ETag read>`` (or ``If-None-Match: *`` when there was
none); AWS S3, MinIO and moto answer 412 when another writer replaced it first.

Every PUT carries the server-side encryption header chosen at construction.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

import structlog
from qframe.research.data_lake.storage.base import DEFAULT_IO_THREADS, DataLakeStorage, ManifestChangedError
from qframe.research.data_lake.storage_layout import LayoutError, StorageError, check_prefix
from qframe.research.redaction import redact

log = structlog.get_logger(__name__)

Encryption = Literal["AES256", "aws:kms"]

_BUCKET_RE_HINT = "3-63 chars of lowercase letters, digits, '.' and '-'"


class S3Storage(DataLakeStorage):
    """A lake under ``s3://bucket/prefix`` (AWS by default, any S3 API with ``endpoint_url``).

    TLS: without ``endpoint_url`` botocore talks HTTPS to AWS. Every PUT carries ``ServerSideEncryption``
    (``AES256`` by default, or ``aws:kms`` with ``kms_key_id``); ``encryption=None`` sends no header.
    Nothing is created implicitly: the bucket must exist, or the constructor raises naming it.
    """

    def __init__(
        self,
        bucket_name: str,
        *,
        prefix: str = "",
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        endpoint_url: str | None = None,
        encryption: Encryption | None = "AES256",
        kms_key_id: str | None = None,
        io_threads: int = DEFAULT_IO_THREADS,
    ) -> None:
        if (
            not isinstance(bucket_name, str)
            or not 3 <= len(bucket_name) <= 63
            or not all(c.islower() or c.isdigit() or c in ".-" for c in bucket_name)
        ):
            raise LayoutError(f"invalid bucket name {bucket_name!r}: S3 bucket names are {_BUCKET_RE_HINT}")
        prefix = check_prefix(prefix.strip("/"))
        if encryption not in (None, "AES256", "aws:kms"):
            raise LayoutError(f"encryption={encryption!r}: use 'AES256', 'aws:kms' (with kms_key_id) or None")
        if kms_key_id is not None and encryption != "aws:kms":
            raise LayoutError("kms_key_id is only used with encryption='aws:kms'; set both or neither")
        if (aws_access_key_id is None) != (aws_secret_access_key is None):
            raise LayoutError("pass both aws_access_key_id and aws_secret_access_key, or neither (credential chain)")
        if endpoint_url is not None:
            scheme = urlsplit(endpoint_url).scheme
            if scheme not in {"http", "https"}:
                raise LayoutError(f"endpoint_url={endpoint_url!r} needs an http:// or https:// scheme")
            host = urlsplit(endpoint_url).hostname or ""
            if scheme == "http" and host not in {"127.0.0.1", "localhost", "::1"}:
                log.warning("lake.s3_plaintext_endpoint", endpoint_url=redact(endpoint_url))
        import s3fs  # noqa: PLC0415 - only S3 users pay for importing botocore

        sse: dict[str, str] = {}
        if encryption is not None:
            sse["ServerSideEncryption"] = encryption
        if kms_key_id is not None:
            sse["SSEKMSKeyId"] = kms_key_id
        fs = s3fs.S3FileSystem(
            key=aws_access_key_id,
            secret=aws_secret_access_key,
            endpoint_url=endpoint_url,
            client_kwargs={"region_name": region_name} if region_name else {},
            s3_additional_kwargs=sse,
            use_listings_cache=False,
            skip_instance_cache=True,
        )
        self.bucket_name = bucket_name
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.encryption = encryption
        super().__init__(fs, f"{bucket_name}/{prefix}".rstrip("/"), io_threads=io_threads)
        self._check_bucket()

    @property
    def url(self) -> str:
        return f"s3://{self.bucket_name}/{self.prefix}".rstrip("/")

    def _check_bucket(self) -> None:
        where = redact(self.endpoint_url) if self.endpoint_url else "AWS S3"
        try:
            self._fs.call_s3("head_bucket", Bucket=self.bucket_name)
        except FileNotFoundError:
            raise StorageError(
                f"bucket {self.bucket_name!r} does not exist at {where}; S3Storage creates nothing implicitly: create "
                f"it first (e.g. `aws s3 mb s3://{self.bucket_name}` or `mc mb <alias>/{self.bucket_name}`) or pass "
                "the right bucket_name"
            ) from None
        except PermissionError as exc:
            raise StorageError(
                f"access to bucket {self.bucket_name!r} at {where} is denied ({exc}); check the credentials and "
                "the bucket policy"
            ) from None
        except OSError as exc:
            raise StorageError(f"cannot reach bucket {self.bucket_name!r} at {where}: {redact(exc)}") from exc
        except Exception as exc:
            if type(exc).__name__ != "NoCredentialsError":  # botocore's; not imported here to keep it lazy
                raise
            raise StorageError(
                f"no S3 credentials for bucket {self.bucket_name!r} at {where}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or an AWS profile / instance role), or pass the keys to the storage"
            ) from None

    def _write(self, path: str, data: bytes, *, exclusive: bool) -> None:
        # One PUT is atomic on S3; If-None-Match makes the create-only commit atomic too.
        try:
            self._fs.pipe_file(path, data, mode="create" if exclusive else "overwrite")
        except FileExistsError:
            raise
        except OSError as exc:
            code = _s3_error_code(exc)
            if exclusive and code in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
                raise FileExistsError(path) from exc
            if code == "NotImplemented" and self.encryption is not None:
                raise StorageError(
                    f"{self.endpoint_url or 'the S3 endpoint'} refused server-side encryption {self.encryption!r} "
                    f"({exc}); MinIO needs a KMS configured for SSE: configure one, or pass encryption=None"
                ) from exc
            raise

    def _read_manifest_tagged(self, path: str) -> tuple[bytes, str] | None:
        # ETag first, then the body: a swap conditioned on that ETag can only succeed if the object did not
        # change since, so the body read is the one being replaced (S3 has no atomic get-with-ETag here).
        bucket, key, _ = self._fs.split_path(path)
        try:
            head = self._fs.call_s3("head_object", Bucket=bucket, Key=key)
            data: bytes = self._fs.cat_file(path)
        except FileNotFoundError:
            return None
        return data, str(head["ETag"])

    def _swap_manifest(self, path: str, data: bytes, *, expected: str | None) -> None:
        if expected is None:
            try:
                self._write(path, data, exclusive=True)
            except FileExistsError:
                raise ManifestChangedError(path) from None
            return
        try:
            self._fs.pipe_file(path, data, IfMatch=expected)
        except FileNotFoundError:  # deleted since we read it (NoSuchKey)
            raise ManifestChangedError(path) from None
        except OSError as exc:
            if _s3_error_code(exc) in {"PreconditionFailed", "412", "ConditionalRequestConflict", "NoSuchKey"}:
                raise ManifestChangedError(path) from exc
            raise


def _s3_error_code(exc: BaseException) -> str:
    """The S3 error code behind an s3fs OSError (s3fs keeps the botocore error as the cause)."""
    cause = exc.__cause__
    response = getattr(cause, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code = str(error.get("Code", ""))
        if code:
            return code
    text_form = str(exc)
    if "pre-conditions you specified did not hold" in text_form:
        return "PreconditionFailed"
    return ""


def minio_endpoint_url(endpoint: str, *, secure: bool) -> str:
    """``host:port`` (minio-py style) or a URL whose scheme must agree with ``secure``."""
    scheme = "https" if secure else "http"
    if not isinstance(endpoint, str) or not endpoint.strip("/"):
        raise LayoutError(f"endpoint={endpoint!r}: pass 'host:port', e.g. 'minio.qframe-data:9000'")
    if "://" in endpoint:
        given = urlsplit(endpoint).scheme
        if given != scheme:
            raise LayoutError(
                f"endpoint {endpoint!r} says {given} but secure={secure}; pass 'host:port' or make them agree"
            )
        return endpoint.rstrip("/")
    return f"{scheme}://{endpoint.rstrip('/')}"


class MinIOStorage(S3Storage):
    """S3Storage against a MinIO endpoint (``host:port``; ``secure`` picks https or http).

    MinIO only honours SSE headers when a KMS is configured on the server, so the default here is
    ``encryption=None`` (rely on the server's own encryption settings); pass ``"AES256"`` if the server has
    KMS/auto-encryption set up.
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket_name: str,
        *,
        secure: bool = True,
        prefix: str = "",
        region_name: str = "us-east-1",
        encryption: Encryption | None = None,
        kms_key_id: str | None = None,
        io_threads: int = DEFAULT_IO_THREADS,
    ) -> None:
        endpoint_url = minio_endpoint_url(endpoint, secure=secure)
        super().__init__(
            bucket_name,
            prefix=prefix,
            region_name=region_name,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            endpoint_url=endpoint_url,
            encryption=encryption,
            kms_key_id=kms_key_id,
            io_threads=io_threads,
        )
