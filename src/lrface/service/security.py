"""Who may call the service: the API keys (a user key, and an admin key that may also read the
audit log), each known in the audit log by a label that does not reveal it, and the rule that
an unauthenticated server binds only to loopback."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

API_KEY_ENV = "LRFACE_API_KEY"
ADMIN_KEY_ENV = "LRFACE_ADMIN_KEY"
API_KEY_HEADER = "X-API-Key"
MIN_KEY_LENGTH = 16


class SecurityError(ValueError):
    """A setting or input the service refuses; the message says which and why."""


def load_api_key(key_file: Path | None, env: str = API_KEY_ENV) -> str | None:
    """The key from ``key_file`` or ``$env`` (the file wins); None if neither."""
    if key_file is not None:
        try:
            key = key_file.read_text().strip()
        except OSError as exc:
            raise SecurityError(f"{key_file}: cannot read the API key ({exc.strerror})") from None
        source = str(key_file)
    else:
        key = os.environ.get(env, "").strip()
        source = f"${env}"
        if not key:
            return None
    if len(key) < MIN_KEY_LENGTH:
        raise SecurityError(f"{source}: the API key must be at least {MIN_KEY_LENGTH} characters")
    return key


@dataclass(frozen=True)
class Caller:
    """Who sent a request: ``role`` (user or admin) and ``label``, how the audit log names
    them (the role and the first 8 hex digits of the key's SHA-256; ``local`` without auth)."""

    role: str
    label: str

    @property
    def admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Keys:
    """The server's keys; ``None`` for both means no authentication (loopback only)."""

    user: str | None = None
    admin: str | None = None

    @property
    def required(self) -> bool:
        return self.user is not None or self.admin is not None

    def caller(self, given: str | None) -> Caller | None:
        """The caller ``given`` (a request's key) identifies, or None when it matches no key."""
        if not self.required:
            return Caller("admin", "local")
        for role, key in (("admin", self.admin), ("user", self.user)):
            if key is not None and key_matches(given, key):
                return Caller(role, f"{role}:{hashlib.sha256(key.encode()).hexdigest()[:8]}")
        return None


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
