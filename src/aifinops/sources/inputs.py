"""Small helpers every file reader shares."""

from __future__ import annotations

import json
from typing import Any

from aifinops.errors import InputError


def load_json(text: str, where: str) -> Any:
    """Decoded JSON, or an InputError naming the file and the line where it breaks."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            f"not valid JSON (truncated?): {error.msg} at line {error.lineno}", where=where
        ) from error
