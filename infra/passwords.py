"""Generated passwords, created by Pulumi and kept only as Pulumi secrets.

(Not named ``secrets.py``: Pulumi puts infra/ first on sys.path, where that name would shadow
the standard library module inside the dynamic provider.)

A Python dynamic provider needs no plugin binary beyond the SDK's own, unlike pulumi-random
(which cannot be built here), and the value is created once, stored encrypted in the stack state
and reused on every later `pulumi up`: passwords never churn and never appear in plain config.
"""

from __future__ import annotations

import secrets
import string
import uuid
from typing import Any

import pulumi
import pulumi.dynamic

# Letters and digits only: the values end up inside connection URIs and shell-free env vars.
ALPHABET = string.ascii_letters + string.digits
MIN_LENGTH = 16
# Recorded as an input so tools reading the state (and the offline harness) can tell these apart.
GENERATED_KIND = "generated-password"


def generate_password(length: int) -> str:
    if length < MIN_LENGTH:
        raise ValueError(f"password length {length} is below {MIN_LENGTH}")
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


class _PasswordProvider(pulumi.dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        length = int(props["length"])
        return pulumi.dynamic.CreateResult(
            id_=uuid.uuid4().hex,
            outs={"kind": GENERATED_KIND, "length": length, "result": generate_password(length)},
        )

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        # Only a new length makes a new password; everything else keeps the stored one.
        changed = int(olds.get("length", 0)) != int(news["length"])
        return pulumi.dynamic.DiffResult(changes=changed, replaces=["length"] if changed else [])


class GeneratedPassword(pulumi.dynamic.Resource):
    """A random password of ``length`` letters and digits; consumers use ``value`` (always secret)."""

    result: pulumi.Output[str]
    length: pulumi.Output[int]

    def __init__(self, name: str, length: int = 32, opts: pulumi.ResourceOptions | None = None) -> None:
        if length < MIN_LENGTH:
            raise ValueError(f"{name}: password length {length} is below {MIN_LENGTH}")
        secret_opts = pulumi.ResourceOptions(additional_secret_outputs=["result"])
        super().__init__(
            _PasswordProvider(),
            name,
            {"kind": GENERATED_KIND, "length": length, "result": None},
            pulumi.ResourceOptions.merge(opts, secret_opts),
        )
        # additional_secret_outputs encrypts `result` in the state; wrapping it as well keeps it
        # secret through every apply() of consumers, whatever engine (or mock) runs the program.
        self.value: pulumi.Output[str] = pulumi.Output.secret(self.result)
