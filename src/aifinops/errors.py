"""One error hierarchy: what failed, where, how to fix it; exit code and HTTP status."""

from __future__ import annotations


class AifinopsError(Exception):
    """Base error. `where` names the file, line, source or flag; `hint` says what to do."""

    exit_code = 1
    http_status = 500

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, str | None]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "where": self.where,
            "hint": self.hint,
        }


class UsageError(AifinopsError):
    """A flag, window or option the user gave cannot be used."""

    exit_code = 2
    http_status = 400


class NotFoundError(UsageError):
    """What was named (a budget, a token) does not exist."""

    http_status = 404


class ConfigError(AifinopsError):
    """The configuration file or environment is invalid."""

    exit_code = 2
    http_status = 400


class InputError(AifinopsError):
    """An input file or scrape is malformed, truncated or of the wrong kind."""

    exit_code = 3
    http_status = 422


class StoreError(AifinopsError):
    """The store cannot be opened, migrated or queried."""

    exit_code = 4
    http_status = 503


class OutputError(AifinopsError):
    """An output (an export file, a report) cannot be written where it was asked to go."""

    exit_code = 5
    http_status = 500


def cannot_write(path: object, error: OSError) -> OutputError:
    """The error for an output path the system refused (a missing or read-only folder)."""
    return OutputError(
        f"cannot write it: {error.strerror or error}",
        where=str(path),
        hint="choose a path in a folder you can write to (-o FILE)",
    )
