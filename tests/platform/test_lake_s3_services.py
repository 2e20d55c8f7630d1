"""S3Storage against the moto S3 API server and MinIOStorage against a real MinIO server."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from qframe.research.data_lake.storage import (
    DatasetVersionExists,
    LayoutError,
    MemoryStorage,
    MinIOStorage,
    ObjectExists,
    S3Storage,
    StorageError,
    minio_endpoint_url,
    storage_from_url,
)

from tools.services import MinioService, S3Service

pytestmark = pytest.mark.services


def bars(symbols: list[str], periods: int, *, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=periods, freq="1h", tz="UTC")
    frames = []
    for sym in symbols:
        close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, periods)))
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": ts,
                    "symbol": sym,
                    "open": close,
                    "high": close * 1.01,
                    "low": close * 0.99,
                    "close": close,
                    "volume": rng.uniform(1, 10, periods),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def new_bucket(client: Any) -> str:
    name = f"lake-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


def moto_storage(s3: S3Service, bucket: str, **kwargs: Any) -> S3Storage:
    return S3Storage(
        bucket,
        prefix="research/lake",
        region_name=s3.region,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key,
        endpoint_url=s3.endpoint_url,
        **kwargs,
    )


def minio_storage(minio: MinioService, bucket: str, **kwargs: Any) -> MinIOStorage:
    return MinIOStorage(
        minio.endpoint_url.removeprefix("http://"),
        minio.access_key_id,
        minio.secret_access_key,
        bucket,
        secure=False,
        prefix="lake",
        region_name=minio.region,
        **kwargs,
    )


def spy_opens(monkeypatch: pytest.MonkeyPatch, storage: S3Storage) -> list[str]:
    """Records every object the storage opens (unverified reads) or fetches whole (verified reads)."""
    opened: list[str] = []
    real_open, real_cat = storage.fs.open, storage.fs.cat_file

    def spy(path: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    def spy_cat(path: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return real_cat(path, *args, **kwargs)

    monkeypatch.setattr(storage.fs, "open", spy)
    monkeypatch.setattr(storage.fs, "cat_file", spy_cat)
    return opened


# --- moto S3 API ---------------------------------------------------------------------------------


def test_s3_roundtrip_checksum_and_sse_header_on_every_object(s3: S3Service) -> None:
    client = boto3.client("s3", **s3.boto3_kwargs())
    bucket = new_bucket(client)
    storage = moto_storage(s3, bucket)
    df = bars(["BTC/USDT", "ETH/USDT"], 24 * 45)
    meta = storage.write_dataset("bars.s3", df, version="v1", extra={"source": "test"})
    assert meta.location == f"s3://{bucket}/research/lake/datasets/bars.s3/v1"
    pd.testing.assert_frame_equal(storage.read_dataset("bars.s3"), df, check_dtype=False)
    assert meta.checksum == MemoryStorage().write_dataset("bars.s3", df, version="v1").checksum
    keys = [obj["Key"] for obj in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == len(meta.files) + 2  # data files, the manifest and the attempt's writer lease
    assert f"research/lake/datasets/bars.s3/v1/{meta.files[0].split('/')[0]}/_writer.json" in keys
    assert f"research/lake/datasets/bars.s3/v1/{meta.files[0]}" in keys
    for key in keys:
        assert client.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256", key
    storage.put_bytes("checkpoints/x.json", b"{}")
    head = client.head_object(Bucket=bucket, Key="research/lake/checkpoints/x.json")
    assert head["ServerSideEncryption"] == "AES256"


def test_s3_kms_encryption_sends_the_key_id(s3: S3Service) -> None:
    client = boto3.client("s3", **s3.boto3_kwargs())
    kms = boto3.client("kms", **s3.boto3_kwargs())
    key_id = kms.create_key(Description="qframe lake test")["KeyMetadata"]["KeyId"]
    bucket = new_bucket(client)
    storage = moto_storage(s3, bucket, encryption="aws:kms", kms_key_id=key_id)
    storage.put_bytes("a/b", b"payload")
    head = client.head_object(Bucket=bucket, Key="research/lake/a/b")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert key_id in head["SSEKMSKeyId"]


def test_s3_missing_bucket_is_a_clear_error_and_nothing_is_created(s3: S3Service) -> None:
    client = boto3.client("s3", **s3.boto3_kwargs())
    before = {b["Name"] for b in client.list_buckets()["Buckets"]}
    with pytest.raises(StorageError, match=r"bucket 'no-such-bucket-x' does not exist.*creates nothing implicitly"):
        moto_storage(s3, "no-such-bucket-x")
    assert {b["Name"] for b in client.list_buckets()["Buckets"]} == before


def test_s3_bad_encryption_arguments_are_refused() -> None:
    with pytest.raises(LayoutError, match="kms_key_id is only used"):
        S3Storage("bucket-x", kms_key_id="k", endpoint_url="http://127.0.0.1:1")
    with pytest.raises(LayoutError, match="encryption="):
        S3Storage("bucket-x", encryption="rot13", endpoint_url="http://127.0.0.1:1")  # type: ignore[arg-type]
    with pytest.raises(LayoutError, match="invalid bucket name"):
        S3Storage("Bad_Bucket", endpoint_url="http://127.0.0.1:1")
    with pytest.raises(LayoutError, match="both"):
        S3Storage("bucket-x", aws_access_key_id="only-one", endpoint_url="http://127.0.0.1:1")


def test_s3_pruning_immutability_and_versions(s3: S3Service, monkeypatch: pytest.MonkeyPatch) -> None:
    client = boto3.client("s3", **s3.boto3_kwargs())
    storage = moto_storage(s3, new_bucket(client))
    df = bars(["AAA", "BBB", "CCC"], 24 * 60)
    storage.write_dataset("bars.p", df, version="v1")
    with pytest.raises(DatasetVersionExists):
        storage.write_dataset("bars.p", bars(["AAA"], 10), version="v1")
    opened = spy_opens(monkeypatch, storage)
    out = storage.read_dataset("bars.p", symbols=["CCC"], start="2024-02-05T00:00Z", end="2024-02-06T00:00Z")
    parquet = [p for p in opened if p.endswith(".parquet")]
    assert len(parquet) == 1
    assert "symbol=CCC/month=2024-02/" in parquet[0]
    assert len(out) == 24
    monkeypatch.undo()
    replacement = bars(["ZZZ"], 5)
    storage.write_dataset("bars.p", replacement, version="v1", overwrite=True)
    pd.testing.assert_frame_equal(storage.read_dataset("bars.p"), replacement, check_dtype=False)
    parquet_keys = [k for k in storage.list_keys("datasets/bars.p/v1/") if k.endswith(".parquet")]
    assert len(parquet_keys) == 1
    assert storage.list_versions("bars.p") == ["v1"]
    assert storage.list_datasets() == ["bars.p"]


def test_storage_from_s3_url(s3: S3Service) -> None:
    client = boto3.client("s3", **s3.boto3_kwargs())
    bucket = new_bucket(client)
    storage = storage_from_url(
        f"s3://{bucket}/team/lake",
        endpoint_url=s3.endpoint_url,
        region_name=s3.region,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key,
    )
    assert isinstance(storage, S3Storage)
    assert storage.url == f"s3://{bucket}/team/lake"
    storage.put_bytes("x/y", b"1")
    assert client.get_object(Bucket=bucket, Key="team/lake/x/y")["Body"].read() == b"1"


def test_s3_create_only_put(s3: S3Service) -> None:
    client = boto3.client("s3", **s3.boto3_kwargs())
    storage = moto_storage(s3, new_bucket(client))
    storage.put_bytes("locks/one", b"first", overwrite=False)
    with pytest.raises(ObjectExists):
        storage.put_bytes("locks/one", b"second", overwrite=False)
    assert storage.get_bytes("locks/one") == b"first"


# --- real MinIO ----------------------------------------------------------------------------------


def test_minio_roundtrip_pruning_and_objects(minio: MinioService, monkeypatch: pytest.MonkeyPatch) -> None:
    client = boto3.client("s3", **minio.boto3_kwargs())
    bucket = new_bucket(client)
    storage = minio_storage(minio, bucket)
    assert storage.url == f"s3://{bucket}/lake"
    df = bars(["BTC/USDT", "ETH/USDT", "SOL/USDT"], 24 * 40)
    meta = storage.write_dataset("bars.minio", df, version="v1")
    pd.testing.assert_frame_equal(storage.read_dataset("bars.minio", verify=True), df, check_dtype=False)
    assert meta.checksum == MemoryStorage().write_dataset("bars.minio", df, version="v1").checksum
    opened = spy_opens(monkeypatch, storage)
    out = storage.read_dataset("bars.minio", symbols=["ETH/USDT"], start="2024-02-01T00:00Z")
    assert [p for p in opened if p.endswith(".parquet")] == [
        f"{bucket}/lake/datasets/bars.minio/v1/{f}" for f in meta.files if "symbol=ETH%2FUSDT/month=2024-02/" in f
    ]
    assert out["timestamp"].min() == pd.Timestamp("2024-02-01T00:00Z")
    monkeypatch.undo()
    with pytest.raises(DatasetVersionExists):
        storage.write_dataset("bars.minio", df, version="v1")
    storage.put_bytes("checkpoints/a", b"1", overwrite=False)
    with pytest.raises(ObjectExists):  # MinIO answers If-None-Match with 412 PreconditionFailed
        storage.put_bytes("checkpoints/a", b"2", overwrite=False)
    assert storage.list_keys("checkpoints/") == ["checkpoints/a"]
    storage.delete_prefix("checkpoints/")
    assert storage.list_keys("checkpoints/") == []
    storage.delete_version("bars.minio", "v1")
    assert storage.list_versions("bars.minio") == []
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_minio_without_kms_refuses_sse_and_the_error_says_so(minio: MinioService) -> None:
    # What the real server does: SSE-S3 (AES256) needs a KMS configured on MinIO, hence encryption=None by default.
    client = boto3.client("s3", **minio.boto3_kwargs())
    bucket = new_bucket(client)
    storage = minio_storage(minio, bucket, encryption="AES256")
    with pytest.raises(StorageError, match=r"refused server-side encryption 'AES256'.*KMS.*encryption=None"):
        storage.write_dataset("bars.sse", bars(["AAA"], 5), version="v1")
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert minio_storage(minio, bucket).list_versions("bars.sse") == []


def test_minio_missing_bucket_is_a_clear_error(minio: MinioService) -> None:
    with pytest.raises(StorageError, match=r"bucket 'absent-bucket' does not exist at http://127\.0\.0\.1"):
        minio_storage(minio, "absent-bucket")


def test_minio_endpoint_scheme_rules() -> None:
    assert minio_endpoint_url("minio:9000", secure=True) == "https://minio:9000"
    assert minio_endpoint_url("127.0.0.1:9000", secure=False) == "http://127.0.0.1:9000"
    assert minio_endpoint_url("https://minio:9000/", secure=True) == "https://minio:9000"
    with pytest.raises(LayoutError, match="secure=True"):
        minio_endpoint_url("http://minio:9000", secure=True)
