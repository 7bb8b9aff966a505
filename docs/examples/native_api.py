"""The native partner API in one file, with the standard library only (Python 3.11+).

    TID_URL=https://tid.example.org TID_API_KEY=tid_... python native_api.py

It reads the lists you may read, follows the first one's change feed from the start, looks up
the first PDQ hash it saw, reports a match on it as removed (idempotently: running it again
creates nothing new), and shows how to check a webhook's signature. docs/partners.md explains
each step; the test suite runs this file against a live server.
"""

import hashlib
import hmac
import json
import os
import time
import urllib.request
from datetime import UTC, datetime

URL = os.environ["TID_URL"].rstrip("/")
if not URL.startswith(("https://", "http://")):
    raise SystemExit("TID_URL is the server's https:// address.")
KEY = os.environ["TID_API_KEY"]


def call(method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        URL + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.load(response)


def follow_feed(slug: str, after: int = 0) -> tuple[dict[str, dict], int]:
    """The list's active entries by id, built from its feed, and the last seq read."""
    entries: dict[str, dict] = {}
    while True:
        page = call("GET", f"/api/v1/lists/{slug}/changes?after={after}&limit=10000")
        for change in page["changes"]:
            if change["op"] == "add":
                entries[change["id"]] = change
            else:
                entries.pop(change["id"], None)
        after = page["next"]
        if not page["has_more"]:
            return entries, after


def webhook_is_genuine(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """A webhook from tidportal: X-Tid-Signature is v1=HMAC-SHA256(secret, f"{timestamp}.{body}")
    and X-Tid-Timestamp is at most five minutes old."""
    timestamp = headers["X-Tid-Timestamp"]
    if abs(time.time() - int(timestamp)) > 300:
        return False  # a replay
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(headers["X-Tid-Signature"], f"v1={expected.hexdigest()}")


def main() -> None:
    lists = call("GET", "/api/v1/lists/")
    print("lists:", ", ".join(f"{hl['slug']} (seq {hl['last_seq']})" for hl in lists))
    slug = lists[0]["slug"]
    entries, seq = follow_feed(slug)
    print(f"{slug}: {len(entries)} active entries at seq {seq}")

    pdq = next(e for e in entries.values() if e["hash_type"] == "pdq")
    found = call(
        "POST", "/api/v1/lookup", {"hashes": [{"hash_type": "pdq", "value": pdq["value"]}]}
    )
    match = found["results"][0]["matches"][0]
    print(f"lookup: entry {match['id']} at distance {match['distance']}")

    now = datetime.now(UTC).isoformat()
    report = {
        "client_ref": f"example:{match['id']}",  # your own idempotency key
        "entry_id": match["id"],
        "distance": match["distance"],
        "content_ref": "upload/12345",  # opaque to tidportal: lets you find the content again
        "matched_at": now,
        "action": "removed",
        "action_at": now,
    }
    answer = call("POST", "/api/v1/matches", {"matches": [report]})
    result = answer["results"][0]
    print(f"report {result['id']}: {'created' if result['created'] else 'already sent'}")

    body = b'{"list":"take-it-down","seq":42}'
    stamp = str(int(time.time()))
    signature = hmac.new(b"s3cret", f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-Tid-Timestamp": stamp, "X-Tid-Signature": f"v1={signature}"}
    print("webhook check:", webhook_is_genuine("s3cret", headers, body))


if __name__ == "__main__":
    main()
