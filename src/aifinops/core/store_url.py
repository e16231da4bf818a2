"""What `--db` names: a DuckDB file, or a PostgreSQL server by URL (pure parsing)."""

from __future__ import annotations

import urllib.parse

POSTGRES_SCHEMES = ("postgresql", "postgres")


def is_postgres(url: str) -> bool:
    """Whether `--db` names a PostgreSQL server (`postgresql://...`) rather than a file."""
    return urllib.parse.urlsplit(str(url)).scheme in POSTGRES_SCHEMES


def redact(url: str) -> str:
    """The store's name without a password, for messages and logs."""
    parts = urllib.parse.urlsplit(str(url))
    if not is_postgres(url) or parts.password is None:
        return str(url)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
