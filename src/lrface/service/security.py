"""What the service refuses: requests without the API key, unsafe identity names, and hosts
other than loopback when authentication is off."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from pathlib import Path

API_KEY_ENV = "LRFACE_API_KEY"
API_KEY_HEADER = "X-API-Key"
MIN_KEY_LENGTH = 16

NAME_PATTERN = re.compile(r"[^\W_][\w .'-]{0,98}[\w.]|[^\W_]")
"""Letters or digits first, then letters, digits, ``_ . ' -`` and spaces (no ``/``, ``\\``,
control characters, or leading dots), at most 100 characters, no space at the end."""


class SecurityError(ValueError):
    """A setting or input the service refuses; the message says which and why."""


def validate_name(name: str) -> str:
    """``name`` if it is a safe identity name, else SecurityError saying what is allowed."""
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise SecurityError(
            f"invalid identity name {name[:120]!r}: use 1-100 letters, digits, spaces and "
            f"_ . ' - (starting with a letter or digit, no '..')"
        )
    return name


def load_api_key(key_file: Path | None) -> str | None:
    """The API key from ``key_file`` or ``$LRFACE_API_KEY`` (the file wins); None if neither."""
    if key_file is not None:
        try:
            key = key_file.read_text().strip()
        except OSError as exc:
            raise SecurityError(f"{key_file}: cannot read the API key ({exc.strerror})") from None
        source = str(key_file)
    else:
        key = os.environ.get(API_KEY_ENV, "").strip()
        source = f"${API_KEY_ENV}"
        if not key:
            return None
    if len(key) < MIN_KEY_LENGTH:
        raise SecurityError(f"{source}: the API key must be at least {MIN_KEY_LENGTH} characters")
    return key


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def key_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a request's key with the server's."""
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())
