"""The admin page's guards: password, sessions, CSRF, Origin and Host checks.

- The admin password is kept as an Argon2id hash in `$KEEP_HOME/admin.json`
  (0600); `keep admin set-password` writes it.
- Sessions live in server memory (a restart logs everyone out); the cookie
  carries only a random id: HttpOnly, SameSite=Strict, Secure under TLS,
  Path=/, 12 h idle limit.
- Every POST must carry the session's CSRF token in a form field, and its
  Origin (or, without one, its Referer) must be this site: either check alone
  refuses a cross-site form.
- The Host header must be in the allow-list (DNS rebinding): by default the
  listen address, localhost and 127.0.0.1 with the port.
- Failed logins from one address slow down: after 3 failures each attempt
  waits 2^(n-3) s (up to 60 s) before it is even checked.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from keep.client.device.state import write_private

ADMIN_FILE = "admin.json"
SESSION_IDLE = 12 * 3600
COOKIE = "keep_admin"
FREE_FAILURES = 3
MAX_DELAY = 60.0
_hasher = PasswordHasher()  # Argon2id with the library's current defaults


def set_password(home: Path, password: str) -> None:
    if len(password) < 8:
        raise ValueError("the admin password needs at least 8 characters")
    write_private(home / ADMIN_FILE, json.dumps({"version": 1, "hash": _hasher.hash(password)}).encode())


def password_is_set(home: Path) -> bool:
    return (home / ADMIN_FILE).exists()


def check_password(home: Path, password: str) -> bool:
    try:
        stored = json.loads((home / ADMIN_FILE).read_text())["hash"]
        return bool(_hasher.verify(stored, password))
    except (OSError, ValueError, KeyError, VerificationError, InvalidHashError):
        return False


@dataclass
class Session:
    csrf: str
    last: float


@dataclass
class Guard:
    allowed_hosts: frozenset[str]
    secure: bool
    sessions: dict[str, Session] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def new_session(self) -> str:
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = Session(secrets.token_urlsafe(32), time.monotonic())
        return sid

    def session(self, sid: str | None) -> Session | None:
        s = self.sessions.get(sid or "")
        if s is None:
            return None
        now = time.monotonic()
        if now - s.last > SESSION_IDLE:
            self.sessions.pop(sid or "", None)
            return None
        s.last = now
        return s

    def end(self, sid: str | None) -> None:
        self.sessions.pop(sid or "", None)

    def host_allowed(self, host: str | None) -> bool:
        return (host or "").lower() in self.allowed_hosts

    def same_origin(self, origin: str | None, referer: str | None, host: str | None) -> bool:
        """Whether a POST comes from a page of this site."""
        source = origin if origin and origin != "null" else referer
        if not source:
            return False
        parts = urlsplit(source)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == (host or "").lower()

    async def slow_down(self, address: str) -> None:
        n = self.failures.get(address, 0)
        if n >= FREE_FAILURES:
            await asyncio.sleep(min(MAX_DELAY, 2.0 ** (n - FREE_FAILURES)))

    def failed(self, address: str) -> None:
        self.failures[address] = self.failures.get(address, 0) + 1

    def succeeded(self, address: str) -> None:
        self.failures.pop(address, None)
