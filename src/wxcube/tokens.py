"""Access tokens with WeChat's semantics (SPEC §3), stored SHA-256 hashed in the tokens table.

Two separate kinds:

- ``token`` (``GET /cgi-bin/token``): every call issues a new token; the app's previous ones
  stay valid 5 more minutes (grace), then answer 40001 ("not latest").
- ``stable`` (``POST /cgi-bin/stable_token``): the same token is handed out while it is valid
  (``expires_in`` counts down); from 5 minutes before its expiry a new one is issued and both
  stay valid until their own expiry. ``force_refresh`` revokes the current one at once and is
  allowed once per 30 s per app (45011 otherwise).

Validity lives in memory (loaded from the table at start, updated after each commit), so the
hot path never touches DuckDB. Plain tokens exist only in memory; after a restart
``stable_token`` therefore issues a new one, and every earlier token stays valid until its
expiry. ``revoked_at`` in the table means "invalid from this time on".
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .errors import AccessTokenExpired, InvalidCredential, MinuteQuotaExceeded
from .store import Store

GRACE = 300.0  # a superseded /cgi-bin/token token stays valid this long
STABLE_RENEW = 300.0  # a stable token is renewed this long before its expiry
FORCE_INTERVAL = 30.0  # at most one force_refresh per app in this many seconds
KEEP_EXPIRED = 86400.0  # expired tokens still answer 42001 (not 40001) for this long
TOKEN = "token"
STABLE = "stable"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    """A token shaped like WeChat's: 136 characters of [A-Za-z0-9_-]."""
    return secrets.token_urlsafe(102)


@dataclass
class TokenRecord:
    appid: str
    kind: str
    issued_at: float
    expires_at: float
    revoked_at: float | None = None

    def invalid_from(self) -> float:
        return self.expires_at if self.revoked_at is None else min(self.expires_at, self.revoked_at)


class TokenBook:
    """The token table in memory, written through to the store (call writers off the loop)."""

    def __init__(self, store: Store, ttl: int, clock: Callable[[], float]) -> None:
        self.store = store
        self.ttl = float(ttl)
        self.clock = clock
        self._lock = threading.Lock()
        self._by_hash: dict[str, TokenRecord] = {}
        self._stable_plain: dict[str, tuple[str, str]] = {}  # appid -> (token, hash)
        self._last_force: dict[str, float] = {}
        now = clock()
        rows = (
            store.read()
            .execute(
                "SELECT token_hash, appid, kind, issued_at, expires_at, revoked_at FROM tokens "
                "WHERE expires_at > ?",
                [now - KEEP_EXPIRED],
            )
            .fetchall()
        )
        for h, appid, kind, issued, expires, revoked in rows:
            self._by_hash[h] = TokenRecord(appid, kind, issued, expires, revoked)

    # --- the hot path ----------------------------------------------------------------------
    def check(self, token: str) -> str:
        """The appid a valid token belongs to; 40001 (unknown, revoked, superseded) or 42001."""
        rec = self._by_hash.get(token_hash(token))
        if rec is None:
            raise InvalidCredential()
        now = self.clock()
        if now < rec.invalid_from():
            return rec.appid
        if rec.revoked_at is not None and rec.revoked_at < rec.expires_at:
            raise InvalidCredential("access_token was superseded or revoked")
        raise AccessTokenExpired()

    # --- writers (blocking: run them on the writer thread) ---------------------------------
    def issue(self, appid: str) -> tuple[str, int]:
        """``/cgi-bin/token``: a new token; the previous ones get the 5-minute grace."""
        now = self.clock()
        token = new_token()
        h = token_hash(token)
        rec = TokenRecord(appid, TOKEN, now, now + self.ttl)
        grace_end = now + GRACE
        with self.store.write() as c:
            c.execute(
                "UPDATE tokens SET revoked_at = ? WHERE appid = ? AND kind = ? "
                "AND (revoked_at IS NULL OR revoked_at > ?)",
                [grace_end, appid, TOKEN, grace_end],
            )
            self._insert(c, h, rec)
        with self._lock:
            for old in self._by_hash.values():
                if old.appid == appid and old.kind == TOKEN and old.invalid_from() > grace_end:
                    old.revoked_at = grace_end
            self._by_hash[h] = rec
            self._prune(now)
        return token, int(self.ttl)

    def stable(self, appid: str, force_refresh: bool) -> tuple[str, int]:
        """``/cgi-bin/stable_token``: the current stable token, or a renewed one."""
        now = self.clock()
        if force_refresh:
            last = self._last_force.get(appid)
            if last is not None and now - last < FORCE_INTERVAL:
                raise MinuteQuotaExceeded(
                    f"force_refresh is allowed once per {int(FORCE_INTERVAL)} s"
                )
        else:
            cur = self._stable_plain.get(appid)
            if cur is not None:
                rec = self._by_hash.get(cur[1])
                if rec is not None and now < rec.invalid_from() - STABLE_RENEW:
                    return cur[0], max(1, int(rec.expires_at - now))
        token = new_token()
        h = token_hash(token)
        rec = TokenRecord(appid, STABLE, now, now + self.ttl)
        with self.store.write() as c:
            if force_refresh:
                c.execute(
                    "UPDATE tokens SET revoked_at = ? WHERE appid = ? AND kind = ? "
                    "AND (revoked_at IS NULL OR revoked_at > ?)",
                    [now, appid, STABLE, now],
                )
            self._insert(c, h, rec)
        with self._lock:
            if force_refresh:
                self._last_force[appid] = now
                for old in self._by_hash.values():
                    if old.appid == appid and old.kind == STABLE and old.invalid_from() > now:
                        old.revoked_at = now
            self._by_hash[h] = rec
            self._stable_plain[appid] = (token, h)
            self._prune(now)
        return token, int(self.ttl)

    def revoked_app(self, appid: str, at: float) -> None:
        """Mirror ``Store.rotate_secret`` (which revoked the app's tokens in the table)."""
        with self._lock:
            for rec in self._by_hash.values():
                if rec.appid == appid and rec.invalid_from() > at:
                    rec.revoked_at = at
            self._stable_plain.pop(appid, None)

    @staticmethod
    def _insert(c: object, h: str, rec: TokenRecord) -> None:
        c.execute(  # type: ignore[attr-defined]
            "INSERT INTO tokens (token_hash, appid, kind, issued_at, expires_at, revoked_at) "
            "VALUES (?, ?, ?, ?, ?, NULL)",
            [h, rec.appid, rec.kind, rec.issued_at, rec.expires_at],
        )

    def _prune(self, now: float) -> None:
        """Forget tokens long expired (they then answer 40001); keeps memory bounded."""
        if len(self._by_hash) < 4096:
            return
        dead = [h for h, r in self._by_hash.items() if r.invalid_from() < now - KEEP_EXPIRED]
        for h in dead:
            del self._by_hash[h]
