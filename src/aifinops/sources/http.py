"""Fetching a scrape or an API response over HTTP, with a timeout, retries and clear errors."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable

from aifinops.errors import InputError

USER_AGENT = "aifinops"


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def fetch_text(
    url: str,
    *,
    timeout: float = 10.0,
    retries: int = 2,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """GET a URL as text. Connection errors and 5xx are retried with exponential backoff;
    anything else, or the last failure, is an InputError naming the URL and the cause."""
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            sleep(backoff * 2 ** (attempt - 1))
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                charset = response.headers.get_content_charset() or "utf-8"
                return str(response.read().decode(charset, errors="replace"))
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code} {error.reason}"
            if error.code < 500:
                break
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            reason = getattr(error, "reason", error)
            last = f"cannot reach it: {reason}"
    raise InputError(
        f"fetch failed after {attempt + 1} attempt(s): {last}",
        where=url,
        hint="check the address and that the exporter is running",
    )


def post_bytes(
    url: str, body: bytes, content_type: str, *, timeout: float = 30.0, token: str | None = None
) -> None:
    """POST a body (with `token` as a bearer token); any failure is an InputError (the
    caller keeps what it tried to send)."""
    headers = {"Content-Type": content_type, "User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise InputError(f"POST failed: HTTP {error.code} {error.reason}", where=url) from error
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
        raise InputError(f"POST failed: {getattr(error, 'reason', error)}", where=url) from error
