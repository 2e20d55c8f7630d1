"""Errors the CLI prints as one line (plus the fix) and exits 2 on; never a traceback."""

from __future__ import annotations

EXIT_UNHEALTHY = 1
EXIT_ERROR = 2


class OpsError(Exception):
    """Something the operator must fix before the command can do its job."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return self.message + (f"; {self.fix}" if self.fix else "")
