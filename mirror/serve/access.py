"""Basic auth from an htpasswd file of bcrypt entries (as distribution's htpasswd reads it):
401 with `WWW-Authenticate: Basic realm=…` until a user and password that match are sent.
A bcrypt check costs tens of milliseconds by design, so it runs in a worker thread and a
pair that matched is remembered (by a hash of the password, never the password)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from pathlib import Path

import bcrypt
from aiohttp import web

from mirror.errors import MirrorError
from mirror.serve.answers import ApiError

__all__ = ["REALM", "Htpasswd"]

REALM = "mirror serve"
#: the largest htpasswd file read
MAX_FILE = 1024 * 1024


class Htpasswd:
    """The users of an htpasswd file (bcrypt `$2a$`, `$2b$`, `$2y$` entries only)."""

    def __init__(self, users: dict[str, bytes]) -> None:
        self.users = users
        self._matched: set[tuple[str, bytes]] = set()

    @classmethod
    def load(cls, path: Path) -> Htpasswd:
        """Read `path`; one line naming the file and line for an entry that is not bcrypt."""
        try:
            with open(path, "rb") as f:
                text = f.read(MAX_FILE + 1)
        except OSError as exc:
            raise MirrorError(f"cannot read --htpasswd {path}: {exc.strerror}") from None
        if len(text) > MAX_FILE:
            raise MirrorError(f"--htpasswd {path} is over {MAX_FILE} bytes")
        users: dict[str, bytes] = {}
        for number, line in enumerate(text.decode("utf-8", "replace").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not user or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                raise MirrorError(
                    f"--htpasswd {path} line {number}: not a bcrypt entry (make it with "
                    "htpasswd -B)"
                )
            users[user] = hashed.encode()
        if not users:
            raise MirrorError(f"--htpasswd {path} holds no user")
        return cls(users)

    async def check(self, request: web.Request) -> None:
        """Return when the request carries a matching user and password; 401 otherwise."""
        refused = ApiError(
            401,
            "UNAUTHORIZED",
            "authentication required",
            {"WWW-Authenticate": f'Basic realm="{REALM}"'},
        )
        given = request.headers.get("Authorization", "")
        scheme, _, encoded = given.partition(" ")
        if scheme.lower() != "basic":
            raise refused
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise refused from None
        hashed = self.users.get(user)
        if not sep or hashed is None:
            raise refused
        key = (user, hashlib.sha256(hashed + b"\0" + password.encode()).digest())
        if key in self._matched:
            return
        if not await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed):
            raise refused
        self._matched.add(key)
