"""Access tokens of an objstore server: a file of names, scopes and hashes.

A token is shown once, when it is made; the file keeps only its SHA-256, so
a copy of the file grants nothing. Checking a presented token hashes it and
compares the hash with every stored one in constant time
(:func:`hmac.compare_digest`), so timing reveals neither which token nor
how much of it matched. The file is JSON, rewritten atomically::

    {"version": 1, "tokens": [{"name": "alice", "scope": "write",
      "sha256": "<hex>", "created": 1733000000.0}]}
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass

from ..errors import ObjstoreError

SCOPES = ("read", "write", "admin")
"""Each scope includes the ones before it."""

TOKEN_PREFIX = "ost_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")


class TokenError(ObjstoreError, ValueError):
    """A token file or token request is invalid."""


@dataclass(frozen=True)
class TokenInfo:
    """One stored token (its hash, never the token itself)."""

    name: str
    scope: str
    sha256: str
    created: float


def default_tokens_file() -> str:
    """``$OBJSTORE_TOKENS``, else ``~/.config/objstore/tokens.json``."""
    env = os.environ.get("OBJSTORE_TOKENS")
    if env:
        return env
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "objstore", "tokens.json")


def scope_allows(granted: str, needed: str) -> bool:
    """Does a token of scope ``granted`` allow an operation that needs ``needed``?"""
    return SCOPES.index(granted) >= SCOPES.index(needed)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenFile:
    """The tokens of one server, in one JSON file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def load(self) -> list[TokenInfo]:
        """Every stored token ([] if the file does not exist)."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return []
        try:
            data = json.loads(raw)
            items = data["tokens"]
            out = [TokenInfo(str(t["name"]), str(t["scope"]), str(t["sha256"]), float(t["created"])) for t in items]
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenError(f"token file {self.path} is not valid: {exc!r}") from None
        for t in out:
            if t.scope not in SCOPES:
                raise TokenError(f"token file {self.path}: token {t.name!r} has unknown scope {t.scope!r}")
        return out

    def _save(self, tokens: list[TokenInfo]) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        data = json.dumps({"version": 1, "tokens": [asdict(t) for t in tokens]}, indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tokens.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def add(self, name: str, scope: str) -> str:
        """Make a token for ``name`` with ``scope``; return it (it is not stored, only its hash)."""
        if not _NAME.fullmatch(name or ""):
            raise TokenError(f"invalid token name {name!r}: use 1-64 letters, digits and . _ @ + - (starting with a letter or digit)")
        if scope not in SCOPES:
            raise TokenError(f"invalid scope {scope!r}: choose one of {', '.join(SCOPES)}")
        tokens = self.load()
        if any(t.name == name for t in tokens):
            raise TokenError(f"a token named {name!r} exists already in {self.path}; revoke it first")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        tokens.append(TokenInfo(name, scope, _digest(token), time.time()))
        self._save(tokens)
        return token

    def revoke(self, name: str) -> TokenInfo:
        """Remove the token called ``name``; return what it was."""
        tokens = self.load()
        for t in tokens:
            if t.name == name:
                self._save([o for o in tokens if o.name != name])
                return t
        raise TokenError(f"no token named {name!r} in {self.path}")


class TokenChecker:
    """Answers "which token is this?" for a server; re-reads the file when it changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.file = TokenFile(path)
        self._stamp: tuple[int, int, int] | None = None
        self._tokens: list[TokenInfo] = []
        self._reload()

    def _reload(self) -> None:
        try:
            st = os.stat(self.file.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = (0, 0, 0)
        if stamp != self._stamp:
            self._tokens = self.file.load()
            self._stamp = stamp

    def check(self, token: str) -> TokenInfo | None:
        """The stored token matching ``token`` (constant-time compare), or None."""
        try:
            self._reload()  # a revoke takes effect on the next request
        except TokenError:
            pass  # keep the last good list rather than lock everybody out
        presented = _digest(token)
        found: TokenInfo | None = None
        for t in self._tokens:
            if hmac.compare_digest(presented, t.sha256):
                found = t
        return found


__all__ = ["SCOPES", "TokenChecker", "TokenError", "TokenFile", "TokenInfo", "default_tokens_file", "scope_allows"]
