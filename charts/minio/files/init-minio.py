#!/usr/bin/env python3
"""Create the platform buckets and one least-privilege access key per consumer; safe to re-run.

The script makes sure that:

* every bucket in ``buckets`` exists and has versioning enabled (when ``versioning`` is true);
* for each consumer ``name`` a policy ``qframe-<name>`` exists that allows only
  s3:ListBucket/s3:GetBucketLocation on the consumer's buckets and s3:GetObject (plus
  s3:PutObject/s3:DeleteObject for ``access: readwrite``) on their objects: no ``s3:*``, no ``*``
  resource. A policy that differs is replaced;
* a user whose access key is the consumer's access key exists, is enabled, has exactly that policy,
  and signs in with the consumer's current secret key (re-set only when it no longer works).

A second run with the same input changes nothing and says so.

Usage (in the chart's Job, or on a workstation)::

    MINIO_ROOT_PASSWORD=... python3 init-minio.py --endpoint http://127.0.0.1:9000 \
        --root-user admin --config-json config.json

The root user may also come from MINIO_ROOT_USER and the root password only comes from
MINIO_ROOT_PASSWORD (never from the command line); like the server, the script also takes
MINIO_ROOT_USER_FILE / MINIO_ROOT_PASSWORD_FILE naming files that hold them (the chart's Job mounts
them from the Secret). The JSON file is an object::

    {"buckets": ["qframe-data-lake"], "versioning": true,
     "consumers": [{"name": "research", "buckets": ["qframe-data-lake"], "access": "readwrite",
                    "accessKeyEnv": "CONSUMER_ACCESS_KEY_RESEARCH",
                    "secretKeyEnv": "CONSUMER_SECRET_KEY_RESEARCH"}]}

where each consumer gives its keys as ``accessKey``/``secretKey`` or, so the file need hold no
secret, ``accessKeyEnv``/``secretKeyEnv`` (names of environment variables) or
``accessKeyFile``/``secretKeyFile`` (paths of files holding them). Secret keys are never
printed. Buckets are handled with boto3; users and policies with the ``minio`` package's
``MinioAdmin`` (the S3 API has no user management). Requires Python 3.9+, boto3 and minio>=7.2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from minio import MinioAdmin
from minio.credentials import StaticProvider
from minio.error import MinioAdminException

BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
ACCESS = ("readwrite", "readonly")
POLICY_PREFIX = "qframe-"
READ_ACTIONS = ["s3:GetObject"]
WRITE_ACTIONS = ["s3:PutObject", "s3:DeleteObject"]
BUCKET_ACTIONS = ["s3:ListBucket", "s3:GetBucketLocation"]


class ConfigError(ValueError):
    """The configuration is unusable; the message says which entry and why."""


@dataclass(frozen=True)
class Consumer:
    name: str
    buckets: tuple[str, ...]
    access: str
    access_key: str
    secret_key: str

    @property
    def policy_name(self) -> str:
        return POLICY_PREFIX + self.name


@dataclass(frozen=True)
class Config:
    buckets: tuple[str, ...]
    versioning: bool
    consumers: tuple[Consumer, ...]


def _key(entry: dict[str, Any], field: str, where: str, environ: dict[str, str]) -> str:
    inline, env, file = entry.get(field), entry.get(field + "Env"), entry.get(field + "File")
    if [inline, env, file].count(None) != 2:
        raise ConfigError(f"{where}: give exactly one of {field}, {field}Env or {field}File")
    if env is not None:
        if not isinstance(env, str) or env not in environ:
            raise ConfigError(f"{where}: environment variable {env!r} ({field}Env) is not set")
        inline = environ[env]
    if file is not None:
        if not isinstance(file, str):
            raise ConfigError(f"{where}: {field}File must be a path")
        inline = read_secret_file(file)
    if not isinstance(inline, str) or not inline.strip():
        raise ConfigError(f"{where}: {field} is empty")
    return inline.strip()


def read_secret_file(path: str) -> str:
    """A credential from a mounted Secret: the file's text without its trailing newline."""
    with open(path, encoding="utf-8") as handle:
        return handle.read().rstrip("\r\n")


def root_credential(environ: dict[str, str], name: str) -> str | None:
    """MINIO_ROOT_USER / MINIO_ROOT_PASSWORD, or the file named by the same name + ``_FILE``."""
    path = environ.get(name + "_FILE")
    if path:
        return read_secret_file(path)
    return environ.get(name)


def load_consumer(entry: Any, where: str, buckets: list[str], environ: dict[str, str]) -> Consumer:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected an object")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{where}: name {name!r} must match {NAME.pattern}")
    own = entry.get("buckets")
    if not isinstance(own, list) or not own or not all(b in buckets for b in own):
        raise ConfigError(f"{where}: buckets must be a non-empty list of the platform buckets {buckets}")
    access = entry.get("access", "readwrite")
    if access not in ACCESS:
        raise ConfigError(f"{where}: access must be one of {ACCESS}")
    access_key = _key(entry, "accessKey", where, environ)
    secret_key = _key(entry, "secretKey", where, environ)
    if len(secret_key) < 8:
        raise ConfigError(f"{where}: secret key is shorter than 8 characters (MinIO's minimum)")
    return Consumer(name, tuple(own), access, access_key, secret_key)


def load_config(path: str, environ: dict[str, str]) -> Config:
    with open(path, encoding="utf-8") as handle:
        raw = json.load(handle)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object with buckets and consumers")
    buckets = raw.get("buckets")
    if not isinstance(buckets, list) or not all(isinstance(b, str) and BUCKET.match(b) for b in buckets):
        raise ConfigError(f"{path}: buckets must be a list of bucket names matching {BUCKET.pattern}")
    if len(set(buckets)) != len(buckets):
        raise ConfigError(f"{path}: a bucket is listed twice")
    versioning = raw.get("versioning", True)
    if not isinstance(versioning, bool):
        raise ConfigError(f"{path}: versioning must be true or false")
    consumers: list[Consumer] = []
    entries = raw.get("consumers", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: consumers must be a list")
    seen_names: set[str] = set()
    seen_keys: set[str] = set()
    for index, entry in enumerate(entries):
        consumer = load_consumer(entry, f"{path}: consumers[{index}]", buckets, environ)
        if consumer.name in seen_names:
            raise ConfigError(f"{path}: consumers[{index}]: consumer {consumer.name!r} is listed twice")
        if consumer.access_key in seen_keys:
            raise ConfigError(f"{path}: consumers[{index}]: access key is shared with another consumer")
        seen_names.add(consumer.name)
        seen_keys.add(consumer.access_key)
        consumers.append(consumer)
    return Config(tuple(buckets), versioning, tuple(consumers))


def policy_document(consumer: Consumer) -> dict[str, Any]:
    """Least privilege: the consumer's buckets only, and only the actions the platform uses."""
    actions = READ_ACTIONS + (WRITE_ACTIONS if consumer.access == "readwrite" else [])
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": list(BUCKET_ACTIONS),
                "Resource": [f"arn:aws:s3:::{b}" for b in consumer.buckets],
            },
            {
                "Effect": "Allow",
                "Action": actions,
                "Resource": [f"arn:aws:s3:::{b}/*" for b in consumer.buckets],
            },
        ],
    }


def _normalise(document: Any) -> Any:
    """A policy in a comparable form: keys, actions and resources sorted, single strings as lists."""
    if isinstance(document, dict):
        return {k: _normalise(v) for k, v in sorted(document.items()) if k not in ("Sid",)}
    if isinstance(document, list):
        return sorted((_normalise(v) for v in document), key=lambda v: json.dumps(v, sort_keys=True))
    return document


def same_policy(current: Any, wanted: dict[str, Any]) -> bool:
    def lists(doc: Any) -> Any:
        if isinstance(doc, dict):
            out = {}
            for k, v in doc.items():
                out[k] = lists([v] if k in ("Action", "Resource") and isinstance(v, str) else v)
            return out
        if isinstance(doc, list):
            return [lists(v) for v in doc]
        return doc

    return bool(_normalise(lists(current)) == _normalise(lists(wanted)))


def wait_ready(endpoint: str, seconds: int) -> None:
    url = endpoint.rstrip("/") + "/minio/health/ready"
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http(s) endpoint from args
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        else:
            last = f"HTTP {response.status}"
        if time.monotonic() >= deadline:
            raise SystemExit(f"MinIO at {endpoint} not ready after {seconds}s: {last}")
        time.sleep(2)


def s3_client(endpoint: str, access_key: str, secret_key: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


def ensure_buckets(s3: Any, config: Config, log: list[str]) -> None:
    for bucket in config.buckets:
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
            s3.create_bucket(Bucket=bucket)
            log.append(f"bucket {bucket}: created")
        if config.versioning:
            status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
            if status != "Enabled":
                s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
                log.append(f"bucket {bucket}: versioning enabled")


def admin_client(endpoint: str, root_user: str, root_password: str) -> Any:
    url = urllib.parse.urlsplit(endpoint)
    return MinioAdmin(
        endpoint=url.netloc,
        credentials=StaticProvider(root_user, root_password),
        secure=url.scheme == "https",
    )


def _missing(exc: Exception) -> bool:
    text = str(exc)
    return any(marker in text for marker in ("404", "NoSuchUser", "NoSuchPolicy", "does not exist"))


def _signs_in(endpoint: str, consumer: Consumer) -> bool:
    """Whether the consumer's current key pair is accepted (a wrong secret is re-set)."""
    try:
        s3_client(endpoint, consumer.access_key, consumer.secret_key).head_bucket(Bucket=consumer.buckets[0])
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        if code in ("403", "SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"):
            return False
        raise
    return True


def ensure_consumer(admin: Any, endpoint: str, consumer: Consumer, log: list[str]) -> None:
    wanted = policy_document(consumer)
    try:
        current: Any = json.loads(admin.policy_info(consumer.policy_name))
        current = current.get("Policy", current) if isinstance(current, dict) else current
    except MinioAdminException as exc:
        if not _missing(exc):
            raise
        current = None
    if current is None or not same_policy(current, wanted):
        admin.policy_add(consumer.policy_name, policy=wanted)
        log.append(
            f"consumer {consumer.name}: policy {consumer.policy_name} {'created' if current is None else 'updated'}"
        )

    try:
        info: dict[str, Any] = json.loads(admin.user_info(consumer.access_key))
    except MinioAdminException as exc:
        if not _missing(exc):
            raise
        info = {}
    if not info:
        admin.user_add(consumer.access_key, consumer.secret_key)
        log.append(f"consumer {consumer.name}: access key created")
        info = {"status": "enabled"}
    if info.get("status") != "enabled":
        admin.user_enable(consumer.access_key)
        log.append(f"consumer {consumer.name}: access key enabled")
    attached = sorted(p for p in str(info.get("policyName") or "").split(",") if p)
    if attached != [consumer.policy_name]:
        admin.policy_set(consumer.policy_name, user=consumer.access_key)
        log.append(f"consumer {consumer.name}: policy attached")
    if not _signs_in(endpoint, consumer):
        # MinIO's add-user sets the secret of an existing user: the Secret's value wins.
        admin.user_add(consumer.access_key, consumer.secret_key)
        log.append(f"consumer {consumer.name}: secret key updated")


def run(endpoint: str, root_user: str, root_password: str, config: Config) -> list[str]:
    log: list[str] = []
    ensure_buckets(s3_client(endpoint, root_user, root_password), config, log)
    if config.consumers:
        admin = admin_client(endpoint, root_user, root_password)
        for consumer in config.consumers:
            ensure_consumer(admin, endpoint, consumer, log)
    return log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="MinIO S3 endpoint, e.g. http://minio:9000")
    parser.add_argument("--root-user", help="default: $MINIO_ROOT_USER or the file $MINIO_ROOT_USER_FILE")
    parser.add_argument("--config-json", required=True, help="buckets and consumers (see the module docstring)")
    parser.add_argument("--wait-seconds", type=int, default=300, help="how long to wait for the server")
    args = parser.parse_args(argv)
    try:
        root_user = args.root_user or root_credential(dict(os.environ), "MINIO_ROOT_USER")
        root_password = root_credential(dict(os.environ), "MINIO_ROOT_PASSWORD")
    except OSError as exc:
        print(f"error: cannot read a root credential file: {exc}", file=sys.stderr)
        return 2
    if not root_user or not root_password:
        parser.error(
            "the root user (--root-user, MINIO_ROOT_USER or MINIO_ROOT_USER_FILE) and the root password "
            "(MINIO_ROOT_PASSWORD or MINIO_ROOT_PASSWORD_FILE) are required"
        )
    if urllib.parse.urlsplit(args.endpoint).scheme not in ("http", "https"):
        parser.error("--endpoint must be an http:// or https:// URL")
    try:
        config = load_config(args.config_json, dict(os.environ))
    except (ConfigError, OSError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    wait_ready(args.endpoint, args.wait_seconds)
    changes = run(args.endpoint, root_user, root_password, config)
    for line in changes:
        print(line)
    print(f"done: {len(config.buckets)} bucket(s), {len(config.consumers)} consumer(s), {len(changes)} change(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
