"""ConfigMaps hold no credentials: those belong in Secrets (RBAC-restricted, encrypted at rest on EKS).

Refused, in ``data`` and ``binaryData``:

- a key whose words (split at camelCase, ``-``, ``_``, ``.``) include password, passwd, secret, token,
  apikey, credential(s), or the pairs access key, private key, api key (``db_password``, ``apiToken``,
  ``aws_secret_access_key``, ``private-key.pem``; not ``tokenizer.json`` or ``keycloak.conf``);
- a ``data`` value holding a PEM private key (``-----BEGIN ... PRIVATE KEY-----``) or an AWS access
  key ID (``AKIA``/``ASIA`` + 16 characters), whatever the key is called.
"""

from __future__ import annotations

import re
from itertools import pairwise

from .model import Context, Resource, as_map, dig

CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
TYPES = frozenset({CONFIG_MAP})

SECRET_WORDS = frozenset(
    {"password", "passwd", "secret", "secrets", "token", "tokens", "apikey", "credential", "credentials"}
)
SECRET_PAIRS = frozenset({("access", "key"), ("private", "key"), ("api", "key")})
PEM_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
AWS_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")


def key_words(key: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    return [word.lower() for word in re.split(r"[^A-Za-z0-9]+", spaced) if word]


def secret_like_key(key: str) -> bool:
    words = key_words(key)
    return bool(SECRET_WORDS & set(words)) or any(pair in SECRET_PAIRS for pair in pairwise(words))


def check_no_secrets(resource: Resource, context: Context) -> list[str]:
    name = dig(resource.props, "metadata", "name") or resource.name
    where = f"ConfigMap '{name}'"
    found = []
    for section in ("data", "binaryData"):
        for key, value in as_map(resource.props.get(section)).items():
            if secret_like_key(str(key)):
                found.append(f"{where}: {section} key {key!r} looks like a credential; move it to a Secret")
            elif section == "data" and isinstance(value, str):
                if PEM_PRIVATE_KEY.search(value):
                    found.append(f"{where}: data[{key!r}] holds a PEM private key; move it to a Secret")
                if AWS_ACCESS_KEY_ID.search(value):
                    found.append(
                        f"{where}: data[{key!r}] holds an AWS access key ID; move it to a Secret (or use IRSA)"
                    )
    return found
