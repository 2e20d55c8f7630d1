#!/usr/bin/env python3
"""Ensure the Kafka topics listed in a JSON file exist with the requested partitions and retention,
and (with --auth-json) that every SCRAM user exists with its password and exactly its ACLs.

Run by the chart's post-install/post-upgrade Job, and runnable on any host:

    python bootstrap-topics.py --bootstrap-servers HOST:PORT --topics-json FILE \
        [--auth-json FILE --admin-password-file FILE --user-passwords-dir DIR]

FILE holds a JSON list of {"name", "partitions", "replicationFactor" (optional), "retentionMs"}.
For each topic:
  - missing: created with the partitions, replication factor and retention.ms;
  - present: partitions grown if more are asked for, retention.ms set if it differs;
    anything already as requested is left alone (running twice changes nothing).
Kafka cannot remove partitions or change a replication factor in place: asking for fewer
partitions than exist is reported as a problem (exit status 3) and the topic is left as it is;
a different replication factor is reported as a warning.
With --auth-json the script connects as the super user "admin" (SASL/SCRAM, the password read from
--admin-password-file). FILE holds {"mechanism": "SCRAM-SHA-512", "users": [{"name", "write",
"read", "groupPrefix"}]}; each user's password is the file DIR/<name>. For each user:
  - its SCRAM credential is set (every run: Kafka keeps only a salted hash, so "unchanged" cannot
    be told apart, and setting it again is harmless);
  - its ACLs become exactly: Write+Describe on the `write` topics, Read+Describe on the `read`
    topics, Read on consumer groups prefixed `groupPrefix`; ACLs of the user not in that set are
    deleted, so a topic taken off a user's list is really taken away.
Only the confluent_kafka package is needed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_UNREACHABLE = 4
REQUEST_TIMEOUT_S = 30.0
ADMIN_USER = "admin"
SCRAM_MECHANISMS = {"SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256, "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512}
# Kafka's minimum for SCRAM-SHA-512 is 4096; twice that costs the broker nothing noticeable per login.
SCRAM_ITERATIONS = 8192


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    replication_factor: int | None
    retention_ms: int


def load_topics(path: Path) -> list[Topic]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a JSON list of topics, got {type(raw).__name__}")
    topics: list[Topic] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"{path}: topic #{index} needs at least a string 'name'")
        partitions = int(item.get("partitions", 1))
        retention_ms = int(item.get("retentionMs", -1))
        rf = item.get("replicationFactor")
        if partitions < 1:
            raise ValueError(f"{path}: topic {item['name']!r}: partitions must be >= 1")
        if retention_ms == 0 or retention_ms < -1:
            raise ValueError(f"{path}: topic {item['name']!r}: retentionMs must be -1 or > 0")
        topics.append(Topic(item["name"], partitions, int(rf) if rf is not None else None, retention_ms))
    return topics


@dataclass(frozen=True)
class User:
    name: str
    write: tuple[str, ...]
    read: tuple[str, ...]
    group_prefix: str


@dataclass(frozen=True)
class Auth:
    mechanism: str
    users: tuple[User, ...]


def load_auth(path: Path) -> Auth:
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or raw.get("mechanism") not in SCRAM_MECHANISMS:
        raise ValueError(f"{path}: expected {{'mechanism': one of {sorted(SCRAM_MECHANISMS)}, 'users': [...]}}")
    users: list[User] = []
    for index, item in enumerate(raw.get("users") or []):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ValueError(f"{path}: user #{index} needs a string 'name'")
        if item["name"] == ADMIN_USER or item["name"] in {u.name for u in users}:
            raise ValueError(f"{path}: user #{index} {item['name']!r} is reserved or listed twice")
        users.append(
            User(
                item["name"],
                tuple(str(t) for t in item.get("write") or []),
                tuple(str(t) for t in item.get("read") or []),
                str(item.get("groupPrefix") or ""),
            )
        )
    return Auth(raw["mechanism"], tuple(users))


def read_secret_file(path: Path) -> str:
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise ValueError(f"{path} is empty: the Secret it comes from has no password")
    return value


def wait_for_cluster(admin: AdminClient, wait_seconds: float) -> Any:
    """Cluster metadata, retrying until the brokers answer or ``wait_seconds`` pass."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return admin.list_topics(timeout=min(10.0, max(1.0, wait_seconds)))
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Kafka did not answer within {wait_seconds:.0f} s: {exc}") from exc
            print(f"waiting for Kafka: {exc}", file=sys.stderr, flush=True)
            time.sleep(2.0)


def _result(future: Any) -> None:
    future.result(timeout=REQUEST_TIMEOUT_S)


def current_retention(admin: AdminClient, names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    found: dict[str, str] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=REQUEST_TIMEOUT_S).items():
        entries = future.result(timeout=REQUEST_TIMEOUT_S)
        entry = entries.get("retention.ms")
        found[resource.name] = entry.value if entry is not None else ""
    return found


def create_missing(admin: AdminClient, missing: list[Topic], report: list[str], problems: list[str]) -> None:
    if not missing:
        return
    new = [
        NewTopic(
            t.name,
            num_partitions=t.partitions,
            replication_factor=t.replication_factor if t.replication_factor is not None else -1,
            config={"retention.ms": str(t.retention_ms)},
        )
        for t in missing
    ]
    for name, future in admin.create_topics(new, request_timeout=REQUEST_TIMEOUT_S).items():
        try:
            _result(future)
            report.append(f"{name}: created")
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                # Created concurrently since we listed; the next run converges its settings.
                report.append(f"{name}: already exists (created concurrently)")
            else:
                problems.append(f"{name}: could not be created: {exc}")


def grow_partitions(
    admin: AdminClient, present: list[Topic], existing: dict[str, Any], report: list[str], problems: list[str]
) -> None:
    grow: dict[str, NewPartitions] = {}
    for topic in present:
        partitions = existing[topic.name].partitions
        have = len(partitions)
        if topic.partitions < have:
            problems.append(
                f"{topic.name}: asks for {topic.partitions} partitions but has {have}; Kafka cannot "
                f"remove partitions. Set partitions to {have} or more, or delete and recreate the topic "
                "(its data is lost)."
            )
        elif topic.partitions > have:
            grow[topic.name] = NewPartitions(topic.name, topic.partitions)
        rf = min((len(p.replicas) for p in partitions.values()), default=0)
        if topic.replication_factor is not None and rf != topic.replication_factor:
            report.append(
                f"{topic.name}: WARNING replication factor is {rf}, {topic.replication_factor} asked; "
                "changing it needs a partition reassignment and is not done here"
            )
    if not grow:
        return
    for name, future in admin.create_partitions(list(grow.values()), request_timeout=REQUEST_TIMEOUT_S).items():
        try:
            _result(future)
            report.append(f"{name}: partitions grown to {grow[name].new_total_count}")
        except KafkaException as exc:
            problems.append(f"{name}: could not add partitions: {exc}")


def sync_retention(admin: AdminClient, present: list[Topic], report: list[str], problems: list[str]) -> None:
    retention = current_retention(admin, [t.name for t in present])
    wanted = {t.name: str(t.retention_ms) for t in present if retention.get(t.name) != str(t.retention_ms)}
    if not wanted:
        return
    alter = [
        ConfigResource(
            ConfigResource.Type.TOPIC,
            name,
            incremental_configs=[ConfigEntry("retention.ms", value, incremental_operation=AlterConfigOpType.SET)],
        )
        for name, value in wanted.items()
    ]
    for resource, future in admin.incremental_alter_configs(alter, request_timeout=REQUEST_TIMEOUT_S).items():
        try:
            _result(future)
            report.append(f"{resource.name}: retention.ms {retention.get(resource.name)} -> {wanted[resource.name]}")
        except KafkaException as exc:
            problems.append(f"{resource.name}: could not set retention.ms: {exc}")


def ensure_topics(admin: AdminClient, topics: list[Topic], metadata: Any) -> tuple[list[str], list[str]]:
    """Applies ``topics``; returns (report lines, problems)."""
    report: list[str] = []
    problems: list[str] = []
    existing = {name: meta for name, meta in metadata.topics.items() if meta.error is None}
    present = [t for t in topics if t.name in existing]
    create_missing(admin, [t for t in topics if t.name not in existing], report, problems)
    grow_partitions(admin, present, existing, report, problems)
    sync_retention(admin, present, report, problems)
    touched = {line.split(":", 1)[0] for line in report if "WARNING" not in line}
    touched |= {problem.split(":", 1)[0] for problem in problems}
    report.extend(f"{t.name}: unchanged" for t in topics if t.name not in touched)
    return report, problems


Acl = tuple[ResourceType, str, ResourcePatternType, AclOperation]


def desired_acls(user: User) -> set[Acl]:
    """Exactly what ``user`` may do: produce to ``write``, consume ``read``, use groups ``groupPrefix*``."""
    acls: set[Acl] = set()
    for topic in user.write:
        acls |= {
            (ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, op)
            for op in (AclOperation.WRITE, AclOperation.DESCRIBE)
        }
    for topic in user.read:
        acls |= {
            (ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, op)
            for op in (AclOperation.READ, AclOperation.DESCRIBE)
        }
    if user.group_prefix:
        acls.add((ResourceType.GROUP, user.group_prefix, ResourcePatternType.PREFIXED, AclOperation.READ))
    return acls


def _binding(principal: str, acl: Acl) -> AclBinding:
    restype, name, pattern, operation = acl
    return AclBinding(restype, name, pattern, principal, "*", operation, AclPermissionType.ALLOW)


def ensure_users(admin: AdminClient, auth: Auth, passwords: Path, report: list[str], problems: list[str]) -> None:
    """Sets every user's SCRAM credential, then brings its ACLs to exactly :func:`desired_acls`."""
    if not auth.users:
        return
    upserts = [
        UserScramCredentialUpsertion(
            user.name,
            ScramCredentialInfo(SCRAM_MECHANISMS[auth.mechanism], SCRAM_ITERATIONS),
            read_secret_file(passwords / user.name).encode(),
        )
        for user in auth.users
    ]
    for name, future in admin.alter_user_scram_credentials(upserts, request_timeout=REQUEST_TIMEOUT_S).items():
        try:
            _result(future)
            report.append(f"user {name}: {auth.mechanism} credential set")
        except KafkaException as exc:
            problems.append(f"user {name}: could not set its credential: {exc}")
    for user in auth.users:
        principal = f"User:{user.name}"
        any_of_user = AclBindingFilter(
            ResourceType.ANY, None, ResourcePatternType.ANY, principal, None, AclOperation.ANY, AclPermissionType.ANY
        )
        found = admin.describe_acls(any_of_user, request_timeout=REQUEST_TIMEOUT_S).result(timeout=REQUEST_TIMEOUT_S)
        have = {
            (b.restype, b.name, b.resource_pattern_type, b.operation): b
            for b in found
            if b.permission_type == AclPermissionType.ALLOW and b.host == "*"
        }
        stale = [
            b
            for b in found
            if (b.restype, b.name, b.resource_pattern_type, b.operation) not in desired_acls(user)
            or b.permission_type != AclPermissionType.ALLOW
            or b.host != "*"
        ]
        missing = sorted(desired_acls(user) - set(have), key=str)
        try:
            if missing:
                for future in admin.create_acls(
                    [_binding(principal, a) for a in missing], request_timeout=REQUEST_TIMEOUT_S
                ).values():
                    _result(future)
            if stale:
                filters = [
                    AclBindingFilter(
                        b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type
                    )
                    for b in stale
                ]
                for future in admin.delete_acls(filters, request_timeout=REQUEST_TIMEOUT_S).values():
                    _result(future)
        except KafkaException as exc:
            problems.append(f"user {user.name}: could not set its ACLs: {exc}")
            continue
        if missing or stale:
            report.append(f"user {user.name}: ACLs {len(missing)} added, {len(stale)} removed")
        else:
            report.append(f"user {user.name}: ACLs unchanged")


def client_config(args: argparse.Namespace, auth: Auth | None) -> dict[str, str]:
    config = {"bootstrap.servers": args.bootstrap_servers, "client.id": "qframe-bootstrap-topics"}
    if args.ca_file is not None:
        if auth is None:
            raise ValueError("--ca-file needs --auth-json: the TLS listener also requires a SASL login")
        config["ssl.ca.location"] = str(args.ca_file)
    if auth is not None:
        config.update(
            {
                "security.protocol": "SASL_SSL" if args.ca_file is not None else "SASL_PLAINTEXT",
                "sasl.mechanisms": auth.mechanism,
                "sasl.username": ADMIN_USER,
                "sasl.password": read_secret_file(args.admin_password_file),
            }
        )
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--bootstrap-servers", required=True, help="HOST:PORT[,HOST:PORT...]")
    parser.add_argument("--topics-json", required=True, type=Path, help="JSON list of topics")
    parser.add_argument("--wait-seconds", type=float, default=120.0, help="how long to wait for Kafka")
    parser.add_argument("--auth-json", type=Path, help="users and ACLs to ensure; connect as 'admin' over SASL")
    parser.add_argument("--admin-password-file", type=Path, help="the admin password (with --auth-json)")
    parser.add_argument("--user-passwords-dir", type=Path, help="one file per user, named after it (with --auth-json)")
    parser.add_argument("--ca-file", type=Path, help="connect with TLS (SASL_SSL), verifying the brokers with this CA")
    args = parser.parse_args(argv)
    if args.auth_json is not None and (args.admin_password_file is None or args.user_passwords_dir is None):
        parser.error("--auth-json needs --admin-password-file and --user-passwords-dir")
    try:
        topics = load_topics(args.topics_json)
        auth = load_auth(args.auth_json) if args.auth_json is not None else None
        config = client_config(args, auth)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    admin = AdminClient(config)
    try:
        metadata = wait_for_cluster(admin, args.wait_seconds)
    except TimeoutError as exc:
        hint = " (or refused the admin's SASL login: check the admin Secret)" if auth is not None else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return EXIT_UNREACHABLE
    report, problems = ensure_topics(admin, topics, metadata)
    if auth is not None:
        try:
            ensure_users(admin, auth, args.user_passwords_dir, report, problems)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    for line in report:
        print(line, flush=True)
    for problem in problems:
        print(f"PROBLEM {problem}", file=sys.stderr, flush=True)
    if problems:
        print(f"{len(problems)} topic(s) could not be brought to the requested state", file=sys.stderr)
        return EXIT_CONFLICT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
