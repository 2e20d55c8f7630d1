"""The one place that decides what a secret looks like in text, so no message, log line or status field prints one.

:func:`redact` masks

* the userinfo of URLs of any scheme: ``postgresql://user:PW@host`` -> ``postgresql://user:***@host``, and a
  lone user part that may be a token (``https://TOKEN@host`` -> ``https://***@host``);
* values of secret-looking parameters in query strings, DSNs and ``key=value`` text (``?password=``,
  ``&token=``, ``secret=``, ``X-Amz-Signature=``, libpq's ``password=...``, ...);
* ``Bearer``/``Basic`` authorization values;
* every value passed to :func:`remember_secret` (e.g. the passwords of the URLs in the settings), wherever
  it appears, also percent-encoded, so a library that re-renders a URL its own way cannot leak it.

Callers: exception messages that embed URLs (catalog, tracking), the CLI's error line and tracebacks, the
structlog processor :func:`redact_event` and ``qframe status``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

__all__ = ["MASK", "forget_secrets", "redact", "redact_event", "remember_secret", "remember_secrets_in_url"]

MASK: Final = "***"
# Shorter values would mask ordinary words and numbers all over the output.
_MIN_REMEMBERED_LEN: Final = 4

# scheme://userinfo@ - greedy up to the last '@' before the path, so a raw '@' inside a password is covered.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s?#@'\"<>]*(?:@[^/\s?#@'\"<>]*)*)@")
_SENSITIVE_NAME = (
    r"[A-Za-z0-9_.\-]*(?:pass(?:word|wd)?|pwd|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|"
    r"credential|signature|session[_\-]?key|auth)[A-Za-z0-9_.\-]*"
)
# key=value in query strings (?&;), DSNs and free text (start or whitespace/comma before the key).
_SECRET_PARAM = re.compile(
    rf"(?P<lead>(?:^|[?&;\s,(\[{{'\"]))(?P<key>{_SENSITIVE_NAME})(?P<kq>['\"]?)(?P<sep>\s*[=:]\s*)(?P<quote>['\"]?)"
    rf"(?P<value>[^\s&;,'\")\]}}]+)",
    re.IGNORECASE,
)
_AUTH_HEADER = re.compile(r"(?P<kind>\b(?:Bearer|Basic|Token)\s+)(?P<value>[A-Za-z0-9._~+/=\-]{8,})")

_remembered: set[str] = set()
_lock = threading.Lock()


def remember_secret(value: str | None) -> None:
    """Masks ``value`` (and its percent-encoded forms) in everything :func:`redact` sees from now on."""
    if not value or len(value) < _MIN_REMEMBERED_LEN:
        return
    forms = {value, unquote(value), quote(value, safe=""), quote(unquote(value), safe="")}
    with _lock:
        _remembered.update(f for f in forms if len(f) >= _MIN_REMEMBERED_LEN)


def remember_secrets_in_url(url: str | None) -> None:
    """Remembers the password (or lone token) of ``url`` and its secret query parameters."""
    if not url or "://" not in url:
        return
    for match in _USERINFO.finditer(url):
        user, sep, password = match.group("userinfo").partition(":")
        remember_secret(password if sep else user)
    try:
        query = urlsplit(url).query
    except ValueError:
        return
    for match in _SECRET_PARAM.finditer("?" + query):
        remember_secret(match.group("value"))


def forget_secrets() -> None:
    """Drops every remembered value (tests)."""
    with _lock:
        _remembered.clear()


def _mask_userinfo(match: re.Match[str]) -> str:
    user, sep, _password = match.group("userinfo").partition(":")
    if sep:
        return f"{match.group('scheme')}{user}:{MASK}@"
    return f"{match.group('scheme')}{MASK}@"


def _mask_param(match: re.Match[str]) -> str:
    key = match.group("key")
    # "NoCredentialsError: Unable to ..." is an exception name and its message, not a key and a secret.
    if ":" in match.group("sep") and key.lower().endswith(("error", "exception", "warning")):
        return match.group(0)
    return f"{match.group('lead')}{key}{match.group('kq')}{match.group('sep')}{match.group('quote')}{MASK}"


def redact(text: object) -> str:
    """``str(text)`` with every secret this module recognises replaced by ``***``."""
    out = text if isinstance(text, str) else str(text)
    with _lock:
        remembered = sorted(_remembered, key=len, reverse=True)
    for value in remembered:
        if value in out:
            out = out.replace(value, MASK)
    out = _USERINFO.sub(_mask_userinfo, out)
    out = _AUTH_HEADER.sub(lambda m: f"{m.group('kind')}{MASK}", out)
    return _SECRET_PARAM.sub(_mask_param, out)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}")
    return value


def redact_event(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: redacts every string in the event (run it after ``format_exc_info``)."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _redact_value(value)
    return event_dict


def redact_lines(lines: Iterable[str]) -> list[str]:
    return [redact(line) for line in lines]
