"""A small client for tidportal's partner API (DESIGN.md section 5), on the standard library only.

``TidClient`` speaks JSON over HTTPS with ``Authorization: Bearer <key>``, asks for gzip on the
feed, retries what is worth retrying (429, 5xx, dropped connections) with exponential backoff that
honours ``Retry-After``, and turns every refusal into a ``TidkitError`` subclass whose message
carries the server's ``detail`` and ``fields``, so a partner's logs say what to fix.

Retrying a POST or PATCH is safe here: match reports are idempotent through their ``client_ref``
and a PATCH sets an outcome rather than adding one.
"""

import email.utils
import gzip
import hashlib
import http.client
import json
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tidkit import __version__
from tidkit.errors import TidkitError

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "ForbiddenError",
    "NotFoundError",
    "RateLimitedError",
    "ServerError",
    "ServerUnreachableError",
    "TidClient",
]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 300.0  # seconds; a longer wait is the server's to explain, not ours to sit out
_CHUNK = 1 << 20


class ApiError(TidkitError):
    """The server answered with an error. ``status``, ``code``, ``detail`` and ``fields`` are the
    parts of the project's error shape ``{"error", "detail", "fields"}``."""

    summary = "The server refused the request"

    def __init__(
        self,
        status: int,
        *,
        code: str = "",
        detail: str = "",
        fields: Mapping[str, Any] | None = None,
        url: str = "",
    ) -> None:
        self.status, self.code, self.detail, self.url = status, code, detail, url
        self.fields = dict(fields or {})
        message = f"{self.summary} (HTTP {status}{f' {code}' if code else ''})"
        if detail:
            message += f": {detail}"
        for name, problems in self.fields.items():
            text = "; ".join(problems) if isinstance(problems, list) else str(problems)
            message += f"\n  {name}: {text}"
        super().__init__(message)


class BadRequestError(ApiError):
    summary = "The server found something invalid in the request"


class AuthenticationError(ApiError):
    summary = "The API key was not accepted (unknown, revoked or expired)"


class ForbiddenError(ApiError):
    summary = "The API key may not do this (missing scope, or the partner is suspended)"


class NotFoundError(ApiError):
    summary = "Not found, or not granted to this partner"


class RateLimitedError(ApiError):
    summary = "Still throttled after retrying"


class ServerError(ApiError):
    summary = "The server failed, even after retrying"


class ServerUnreachableError(TidkitError):
    """The server could not be reached (refused, reset, timed out) even after retrying."""


_ERRORS_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
    429: RateLimitedError,
}


class _Retry(Exception):  # noqa: N818 - internal control flow, never escapes
    def __init__(self, error: Exception, wait: float | None) -> None:
        self.error, self.wait = error, wait


class TidClient:
    """The partner API of one tidportal server.

    ``base_url`` is the site's root (``https://tid.example.org``); a trailing ``/api/v1`` is
    accepted too. ``retries`` is how many times a failed request is tried again; waits grow from
    ``backoff`` seconds, doubling, with jitter, or follow the server's ``Retry-After``.

    >>> client = TidClient("https://tid.example.org", "tid_abcd1234_…")  # doctest: +SKIP
    >>> client.changes("take-it-down", after=0, limit=1000)["has_more"]  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float = 60.0,
        retries: int = 5,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url.strip())
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"The server URL must start with https:// (got {base_url!r}).")
        path = parsed.path.rstrip("/")
        path = path.removesuffix("/api/v1")
        self.base_url = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))
        self.api_key = api_key
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self._sleep = sleep

    # -- hash lists --------------------------------------------------------------------------

    def lists(self) -> list[dict[str, Any]]:
        """The lists this partner may read: ``[{slug, name, description, last_seq}]``."""
        return self._json("GET", "/api/v1/lists/")

    def keys(self) -> list[dict[str, Any]]:
        """The public keys that sign snapshots: ``[{key_id, algorithm, public_key, current}]``
        (``public_key`` is base64 of the raw 32-byte Ed25519 key). Needs no API key."""
        return self._json("GET", "/api/v1/keys", auth=False)["keys"]

    def snapshot_meta(self, slug: str, seq: int | None = None) -> dict[str, Any]:
        """The newest snapshot of a list (or the one at ``seq``): ``{list, seq, entry_count,
        size_bytes, sha256, key_id, signature, signed_message, created_at, download_url}``.
        Raises NotFoundError when the list has no snapshot yet or is not granted."""
        params = {"seq": seq} if seq is not None else None
        return self._json("GET", f"/api/v1/lists/{_slug(slug)}/snapshot", params=params)

    def download_snapshot(self, slug: str, seq: int, dest: str | os.PathLike[str]) -> str:
        """Write the snapshot file at ``seq`` (gzip'd JSON Lines) to ``dest``; return the SHA-256
        of the bytes written. A failed transfer is started again from the beginning."""
        path = f"/api/v1/lists/{_slug(slug)}/snapshot/download"

        def receive(response: http.client.HTTPResponse) -> str:
            served = response.headers.get("X-Tid-Seq")
            if served is not None and served != str(seq):
                raise TidkitError(f"Asked for the snapshot at seq {seq}, got {served}.")
            digest = hashlib.sha256()
            with open(dest, "wb") as fh:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(block)
                    fh.write(block)
                fh.flush()
                os.fsync(fh.fileno())
            return digest.hexdigest()

        return self._request("GET", path, params={"seq": seq}, receive=receive, gzip_ok=False)

    def changes(self, slug: str, after: int = 0, limit: int = 10_000) -> dict[str, Any]:
        """One page of the change feed after ``after``: ``{changes: [{seq, op, id, hash_type,
        value, media_type, quality, at, frames?}], next, has_more}`` (gzip on the wire)."""
        return self._json(
            "GET", f"/api/v1/lists/{_slug(slug)}/changes", params={"after": after, "limit": limit}
        )

    # -- match reports -----------------------------------------------------------------------

    def post_matches(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Report up to 1000 matches in one batch (``POST /api/v1/matches``). Each item has a
        ``client_ref`` (the idempotency key: a repeat is not stored twice), ``entry_id`` (or
        ``hash_type`` and ``value``), ``distance``, ``content_ref``, ``matched_at``, ``action``
        and optionally ``action_at``. The server validates the whole batch first: one bad item
        raises BadRequestError naming it, and nothing is stored."""
        return self._json("POST", "/api/v1/matches", body={"matches": [dict(i) for i in items]})

    def patch_match(
        self, match_id: str, action: str, action_at: datetime | str | None = None
    ) -> dict[str, Any]:
        """Record a later outcome of a reported match (for example the takedown itself)."""
        when = action_at or datetime.now(UTC)
        body = {"action": action, "action_at": when if isinstance(when, str) else when.isoformat()}
        return self._json("PATCH", f"/api/v1/matches/{urllib.parse.quote(match_id)}", body=body)

    # -- plumbing ----------------------------------------------------------------------------

    def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        auth: bool = True,
    ) -> Any:
        def receive(response: http.client.HTTPResponse) -> Any:
            return json.loads(_read_body(response))

        return self._request(method, path, params=params, body=body, auth=auth, receive=receive)

    def _request(
        self,
        method: str,
        path: str,
        *,
        receive: Callable[[http.client.HTTPResponse], Any],
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        auth: bool = True,
        gzip_ok: bool = True,
    ) -> Any:
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"Accept": "application/json", "User-Agent": f"tidkit/{__version__}"}
        if gzip_ok:
            headers["Accept-Encoding"] = "gzip"
        if auth:
            if not self.api_key:
                raise AuthenticationError(401, detail="No API key was given.", url=url)
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(self.retries + 1):
            # The scheme was checked in __init__: only http and https URLs are ever opened.
            request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
            try:
                return self._attempt(request, receive)
            except _Retry as retry:
                if attempt == self.retries:
                    raise retry.error from None
                self._sleep(self._wait(attempt, retry.wait))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _attempt(
        self, request: urllib.request.Request, receive: Callable[[http.client.HTTPResponse], Any]
    ) -> Any:
        url = request.full_url
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return receive(response)
        except urllib.error.HTTPError as response:
            with response:
                error = _api_error(response, url)
            if response.code in RETRY_STATUSES:
                raise _Retry(error, _retry_after(response.headers.get("Retry-After"))) from None
            raise error from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise _Retry(
                ServerUnreachableError(f"Could not reach {self.base_url}: {reason}"), None
            ) from None

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        base = self.backoff * 2**attempt
        return base + random.uniform(0, base / 2)  # noqa: S311 - jitter, not a secret


def _slug(slug: str) -> str:
    return urllib.parse.quote(slug, safe="")


def _read_body(response: http.client.HTTPResponse | urllib.error.HTTPError) -> bytes:
    raw = response.read()
    if (response.headers.get("Content-Encoding") or "").lower() == "gzip":
        raw = gzip.decompress(raw)
    return raw


def _api_error(response: urllib.error.HTTPError, url: str) -> ApiError:
    """The server's error shape as an ApiError; tolerant of bodies that are not that shape (a
    proxy's HTML 502, say)."""
    status = response.code
    cls = _ERRORS_BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    try:
        payload = json.loads(_read_body(response))
    except (ValueError, OSError, EOFError):
        payload = None
    if not isinstance(payload, dict):
        return cls(status, detail=response.reason or "", url=url)
    fields = payload.get("fields")
    return cls(
        status,
        code=str(payload.get("error") or ""),
        detail=str(payload.get("detail") or ""),
        fields=fields if isinstance(fields, dict) else None,
        url=url,
    )


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
