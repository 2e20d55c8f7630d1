"""The one error a local service raises when it does not start, and the log excerpts it quotes.

A service that cannot start must fail the run with enough to act on: which service, the command,
the exit code or the timeout, the lines of its log that look like errors (a long log's tail is
often only shutdown noise), the tail itself, and what to do about it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path

LOG_TAIL_LINES = 40

# Lines worth quoting from a long log: Java/Python exceptions, log4j/slf4j/uvicorn and PostgreSQL levels.
_ERROR_LINE = re.compile(r"\b(ERROR|FATAL|PANIC)\b|Exception\b|Error:|Traceback \(most recent")

# What to do about a failure: a fixed sentence, or one chosen after reading the log tail.
Fix = str | Callable[[str], str]


class ServiceStartError(RuntimeError):
    """A local service did not start; the message says which, how it was started, why and what to do."""

    def __init__(
        self,
        service: str,
        reason: str,
        *,
        fix: Fix,
        command: Sequence[str] | None = None,
        returncode: int | None = None,
        log_path: Path | None = None,
        log_tail: str = "",
        log_errors: Sequence[str] = (),
    ) -> None:
        self.service = service
        self.reason = reason
        self.fix = fix if isinstance(fix, str) else fix(log_tail)
        self.command = list(command) if command is not None else None
        self.returncode = returncode
        self.log_tail = log_tail
        self.log_errors = list(log_errors)
        lines = [f"{service} failed to start: {reason}"]
        if self.command is not None:
            lines.append(f"  command: {shlex.join(self.command)}")
        if returncode is not None:
            lines.append(f"  exit code: {returncode}")
        if self.log_errors:
            lines.append("  first error lines in the log:")
            lines.extend(f"    ! {line}" for line in self.log_errors)
        if log_path is not None:
            shown = log_tail.rstrip() or "(empty)"
            lines.append(f"  last {LOG_TAIL_LINES} lines of its log ({log_path}, removed with its temp dir):")
            lines.extend(f"    | {line}" for line in shown.splitlines())
        lines.append(f"  fix: {self.fix}")
        super().__init__("\n".join(lines))

    @classmethod
    def from_log(
        cls,
        service: str,
        reason: str,
        *,
        fix: Fix,
        command: Sequence[str],
        log_path: Path,
        returncode: int | None = None,
    ) -> ServiceStartError:
        """The error for a process that wrote a log, quoting its error lines and its tail."""
        return cls(
            service,
            reason,
            fix=fix,
            command=command,
            returncode=returncode,
            log_path=log_path,
            log_tail=log_tail(log_path),
            log_errors=error_lines(log_path),
        )


def error_lines(path: Path, limit: int = 8, width: int = 400) -> list[str]:
    """The first lines of the log that look like errors, each cut to ``width`` characters."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    found = [line[:width] for line in text.splitlines() if _ERROR_LINE.search(line)]
    return found[:limit]


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the log, or why it could not be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(log unreadable: {exc})"
    return "\n".join(text.splitlines()[-lines:])
