"""The consumers' logins, the same for both PostgreSQL variants: a generated password each and a
Secret ``postgres-<consumer>`` with the keys every consumer reads (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from infra.components.credentials import credentials_secret
from infra.components.postgres import PORT, connection_uri, consumer_secret_name, database_name
from infra.passwords import GeneratedPassword


@dataclass(frozen=True)
class ConsumerLogin:
    secret_name: str
    secret: pulumi.Resource
    password: pulumi.Output[str]


def connection_data(user: str, *, tls: bool) -> Callable[[list[Any]], dict[str, str]]:
    """The keys of one consumer's Secret, from ``[host, password]`` (for Output.all(...).apply)."""

    def build(values: list[Any]) -> dict[str, str]:
        host, password = str(values[0]), str(values[1])
        return {
            "username": user,
            "password": password,
            "database": user,
            "host": host,
            "port": str(PORT),
            "uri": connection_uri(user=user, password=password, host=host, port=PORT, database=user, tls=tls),
        }

    return build


def consumer_login(
    name: str,
    consumer: str,
    *,
    host: pulumi.Input[str],
    namespace: pulumi.Input[str],
    labels: Mapping[str, str],
    tls: bool,
    password_opts: pulumi.ResourceOptions,
    opts: pulumi.ResourceOptions,
) -> ConsumerLogin:
    """``password_opts`` apart from ``opts``: on RDS the passwords are protected like the instance
    whose data they open; a churned one would no longer match the role the init Job set."""
    password = GeneratedPassword(f"{name}-{consumer}-password", opts=password_opts)
    secret_name = consumer_secret_name(consumer)
    secret = credentials_secret(
        f"{name}-{consumer}",
        name=secret_name,
        namespace=namespace,
        labels={**labels, "qframe.io/postgres-consumer": consumer},
        data=pulumi.Output.all(host, password.value).apply(connection_data(database_name(consumer), tls=tls)),
        opts=opts,
    )
    return ConsumerLogin(secret_name, secret, password.value)
