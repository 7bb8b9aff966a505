"""Webhooks: "list changed" notifications to partners (DESIGN.md sections 4 and 8).

After the sequencer assigns seqs on a list, every active partner that reads the (published) list
and has a webhook URL gets ``POST {"list": <slug>, "seq": <latest seq>}``, signed with
HMAC-SHA256 under its webhook secret over ``f"{timestamp}.{body}"``; the timestamp travels in
``X-Tid-Timestamp`` so a receiver can refuse replays. A notification carries no list data: the
partner fetches the feed after its own checkpoint, so only the newest seq matters and an older
undelivered notification is superseded by a newer one. The task of a superseded delivery attempts
the newest one instead: while a list keeps changing, each delivery may be superseded before its
task reaches a worker, and partners would otherwise hear nothing until the list stops changing.

Each delivery is a row (the log staff see) and one Celery task per attempt, so one partner's slow
or failing endpoint never holds up another's. The database is the source of truth: an attempt
that could not be queued (Redis down) or whose worker died is picked up by the scheduled
``webhook_deliveries_due`` run.

An attempt runs in three steps so that no lock or transaction is held during the HTTP request:
claim the row (count the attempt, lease it by pushing ``next_attempt_at`` past the longest
attempt, so no other task or scheduled run starts it again meanwhile), post, record the outcome.
"""

import hashlib
import hmac
import json
import logging
import random
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from http.client import HTTPException, HTTPMessage, RemoteDisconnected
from typing import IO
from urllib.parse import urlsplit

from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from hashlists.models import HashList
from partners.models import Partner, WebhookDelivery
from tidportal.crypto import UnreadableSecret

logger = logging.getLogger(__name__)

USER_AGENT = "tidportal-webhooks/1"
TIMESTAMP_HEADER = "X-Tid-Timestamp"
SIGNATURE_HEADER = "X-Tid-Signature"
SIGNATURE_VERSION = "v1"

# Connect and each read of the answer time out after this long (urllib's socket timeout).
TIMEOUT_SECONDS = 5.0
# Retries: 30 s, 1, 2, 4, ... minutes, capped at an hour, each shortened by up to 20 % at random
# so that many deliveries failing together (a partner's outage) do not retry in lockstep. With
# at most 20 % off, every delay is still longer than the one before it, until the cap.
RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)
RETRY_JITTER = 0.2
# A delivery whose next retry would fall later than this after it was queued is given up.
GIVE_UP_AFTER = timedelta(days=1)
# While an attempt runs, its row is leased this long: far longer than an attempt takes (a few
# timeouts), so no second attempt starts beside it; short enough that an attempt lost with its
# worker is retried soon by the scheduled run.
ATTEMPT_LEASE = timedelta(minutes=2)
# The scheduled run marks what it queued for this long, so that while no worker consumes the
# queue it does not queue the same delivery again every few seconds.
DUE_QUEUED_MARK_SECONDS = 300
DUE_BATCH = 1000

RETRYABLE = (WebhookDelivery.Status.PENDING, WebhookDelivery.Status.FAILED)
# The stored secret was encrypted under a key the server no longer has (tidportal/crypto.py):
# retrying cannot help, and signing with anything else would only be refused by the partner.
UNDECRYPTABLE_ERROR = (
    "webhook secret cannot be decrypted: the server's key changed; set a new secret for the partner"
)
_jitter = random.SystemRandom()


@dataclass(frozen=True)
class _Attempt:
    delivery_id: int
    partner_id: int
    hash_list_id: int
    list_slug: str
    seq: int
    attempt: int
    url: str
    secret: str = ""
    refusal: str = ""  # why nothing is posted on this attempt (it still counts as failed)


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    status_code: int | None = None
    error: str = ""


# ------------------------------------------------------------------------------------------------
# The request a partner receives
# ------------------------------------------------------------------------------------------------


def webhook_body(*, list_slug: str, seq: int) -> bytes:
    """The notification body: compact JSON, ``{"list":"<slug>","seq":<seq>}``."""
    return json.dumps({"list": list_slug, "seq": seq}, separators=(",", ":")).encode()


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``, the X-Tid-Signature value."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={digest.hexdigest()}"


def webhook_retry_delay(*, attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failed attempt: 30 s doubling up to an hour,
    less up to 20 % jitter (so never more than an hour)."""
    exponent = min(max(attempts, 1) - 1, 16)  # 30 s * 2**16 is far past the cap already
    delay = min(RETRY_BASE * 2**exponent, RETRY_CAP)
    return delay * _jitter.uniform(1 - RETRY_JITTER, 1)


# ------------------------------------------------------------------------------------------------
# Queueing
# ------------------------------------------------------------------------------------------------


def _subscribers(*, hash_list_id: int) -> list[Partner]:
    return list(
        Partner.objects.filter(
            readable_lists=hash_list_id,
            readable_lists__published=True,
            status=Partner.Status.ACTIVE,
        )
        .exclude(webhook_url="")
        .order_by("pk")
    )


@transaction.atomic
def webhook_deliveries_queue(*, hash_list_id: int, seq: int) -> list[WebhookDelivery]:
    """Notify every subscriber of list ``hash_list_id`` that its feed now reaches ``seq``.

    Called by the sequencer in its transaction, once per list, with the list's new highest seq.
    Subscribers are active partners that may read the list (and the list is published) and that
    have a webhook URL; a partner with a URL but no secret gets a delivery that fails visibly.

    Guarantees: one delivery per (partner, list, seq), so calling this again changes nothing;
    every pending or failed delivery of the same partner and list with an older seq is marked
    ``superseded`` (the newer one tells the partner everything). Queues one ``webhook_deliver``
    task per new delivery after commit (a task that cannot be sent is logged, and sent later by
    the due run). Returns the deliveries for ``seq``; raises nothing of its own.
    """
    from partners import tasks

    partners = _subscribers(hash_list_id=hash_list_id)
    if not partners:
        return []
    now = timezone.now()
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(partner=p, hash_list_id=hash_list_id, seq=seq, next_attempt_at=now)
            for p in partners
        ],
        ignore_conflicts=True,  # already queued for this seq: idempotent
    )
    superseded = WebhookDelivery.objects.filter(
        partner__in=partners, hash_list_id=hash_list_id, seq__lt=seq, status__in=RETRYABLE
    ).update(status=WebhookDelivery.Status.SUPERSEDED, next_attempt_at=None, updated_at=now)
    deliveries = list(
        WebhookDelivery.objects.filter(
            partner__in=partners, hash_list_id=hash_list_id, seq=seq
        ).order_by("partner_id")
    )
    for delivery in deliveries:
        if delivery.status == WebhookDelivery.Status.PENDING and delivery.attempts == 0:
            # Robust: a broker that cannot take the task must not fail the sequencer after its
            # commit; the due run sends the delivery later.
            transaction.on_commit(partial(tasks.webhook_deliver.delay, delivery.pk), robust=True)
    logger.info(
        "webhook deliveries queued",
        extra={
            "hash_list_id": hash_list_id,
            "seq": seq,
            "deliveries": len(deliveries),
            "superseded": superseded,
        },
    )
    return deliveries


def webhook_deliveries_due_queue() -> int:
    """Queue ``webhook_deliver`` for every pending or failed delivery whose next attempt is due.

    Run by beat, so a delivery whose task was never sent (Redis down at commit) or was lost with
    its worker is still made. Each delivery is queued at most once per few minutes while no
    worker takes it (a mark in the cache); duplicates are harmless anyway, as an attempt claims
    its row first. Returns how many tasks it queued.
    """
    from partners import tasks

    now = timezone.now()
    due = list(
        WebhookDelivery.objects.filter(status__in=RETRYABLE)
        .filter(Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True))
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:DUE_BATCH]
    )
    queued = 0
    for delivery_id in due:
        if cache.add(_due_mark_key(delivery_id), 1, timeout=DUE_QUEUED_MARK_SECONDS):
            tasks.webhook_deliver.delay(delivery_id)
            queued += 1
    if queued:
        logger.info("webhook deliveries due queued", extra={"queued": queued, "due": len(due)})
    return queued


def _due_mark_key(delivery_id: int) -> str:
    return f"webhook-delivery-queued:{delivery_id}"


# ------------------------------------------------------------------------------------------------
# One attempt
# ------------------------------------------------------------------------------------------------


def webhook_delivery_attempt(*, delivery_id: int) -> WebhookDelivery | None:
    """Make one attempt at a delivery and record its outcome; return the delivery as recorded.

    For a superseded delivery, the attempt is at the newest pending or failed delivery of the
    same partner and list (the one that superseded it, whose own task may still be queued).
    A no-op (returns None) for a delivery that is missing, delivered, given up, not due yet, or
    being attempted by another task right now. A delivery whose partner was
    suspended, lost the list or its URL since it was queued is given up without a request
    (returns None too), as is one whose partner's secret cannot be decrypted any more.
    Posts only to http(s) URLs and only with a secret set; otherwise the attempt fails with a
    readable ``last_error``. Success is any 2xx answer; a redirect, another status, a
    connection error or a timeout fails the attempt, which is retried with backoff (by setting
    ``next_attempt_at``) until about a day has passed, then given up. Never raises for what the
    partner's endpoint does; database errors propagate (the task retries them).
    """
    cache.delete(_due_mark_key(delivery_id))
    attempt = _attempt_claim(delivery_id=delivery_id)
    if attempt is None:
        return None
    if attempt.delivery_id != delivery_id:  # a newer delivery than the one asked for
        cache.delete(_due_mark_key(attempt.delivery_id))
    outcome = _Outcome(ok=False, error=attempt.refusal) if attempt.refusal else _post(attempt)
    return _attempt_record(attempt=attempt, outcome=outcome)


@transaction.atomic
def _attempt_claim(*, delivery_id: int) -> _Attempt | None:
    now = timezone.now()
    delivery = (
        WebhookDelivery.objects.select_for_update(of=("self",))
        .select_related("partner", "hash_list")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is not None and delivery.status == WebhookDelivery.Status.SUPERSEDED:
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("partner", "hash_list")
            .filter(
                partner_id=delivery.partner_id,
                hash_list_id=delivery.hash_list_id,
                status__in=RETRYABLE,
            )
            .order_by("-seq")
            .first()
        )
    if delivery is None or delivery.status not in RETRYABLE:
        return None
    if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
        return None  # not due, or leased by an attempt in progress
    partner, hash_list = delivery.partner, delivery.hash_list
    reason = _ineligible_reason(partner=partner, hash_list=hash_list)
    if reason:
        delivery.status, delivery.next_attempt_at, delivery.last_error = (
            WebhookDelivery.Status.GAVE_UP,
            None,
            reason,
        )
        delivery.save(update_fields=["status", "next_attempt_at", "last_error", "updated_at"])
        # The others are the partner's doing; this one is the server's: an error for operators.
        log = logger.error if reason == UNDECRYPTABLE_ERROR else logger.warning
        log("webhook delivery given up", extra=_log_extra(delivery, error=reason))
        return None
    delivery.attempts += 1
    delivery.next_attempt_at = now + ATTEMPT_LEASE
    delivery.save(update_fields=["attempts", "next_attempt_at", "updated_at"])
    refusal = ""
    if urlsplit(partner.webhook_url).scheme.lower() not in ("http", "https"):
        refusal = "refused: the webhook URL must be http:// or https://"
    elif not partner.webhook_secret:
        refusal = "no webhook secret set"
    return _Attempt(
        delivery_id=delivery.pk,
        partner_id=partner.pk,
        hash_list_id=hash_list.pk,
        list_slug=hash_list.slug,
        seq=delivery.seq,
        attempt=delivery.attempts,
        url=partner.webhook_url,
        secret=partner.webhook_secret,
        refusal=refusal,
    )


def _ineligible_reason(*, partner: Partner, hash_list: HashList) -> str:
    if not partner.is_active:
        return "partner suspended"
    if not partner.webhook_url:
        return "no webhook URL set"
    if isinstance(partner.webhook_secret, UnreadableSecret):
        return UNDECRYPTABLE_ERROR
    if not hash_list.published:
        return "list not published"
    if not partner.readable_lists.filter(pk=hash_list.pk).exists():
        return "partner no longer reads this list"
    return ""


@transaction.atomic
def _attempt_record(*, attempt: _Attempt, outcome: _Outcome) -> WebhookDelivery:
    now = timezone.now()
    delivery = WebhookDelivery.objects.select_for_update().get(pk=attempt.delivery_id)
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error[:500]
    if outcome.ok:
        # Delivered even if superseded meanwhile: the partner did get this notification.
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = (
            WebhookDelivery.Status.DELIVERED,
            now,
            None,
        )
        logger.info("webhook delivered", extra=_log_extra(delivery, outcome=outcome))
    elif delivery.status in RETRYABLE:
        retry_at = now + webhook_retry_delay(attempts=delivery.attempts)
        if retry_at - delivery.created_at > GIVE_UP_AFTER:
            delivery.status, delivery.next_attempt_at = WebhookDelivery.Status.GAVE_UP, None
            logger.warning("webhook delivery given up", extra=_log_extra(delivery, outcome=outcome))
        else:
            delivery.status, delivery.next_attempt_at = WebhookDelivery.Status.FAILED, retry_at
            logger.warning("webhook attempt failed", extra=_log_extra(delivery, outcome=outcome))
    else:
        # Superseded while this attempt ran: the newer delivery carries on, this one stops.
        logger.info("webhook attempt failed", extra=_log_extra(delivery, outcome=outcome))
    delivery.save(
        update_fields=[
            "status",
            "last_status_code",
            "last_error",
            "delivered_at",
            "next_attempt_at",
            "updated_at",
        ]
    )
    return delivery


def _log_extra(
    delivery: WebhookDelivery, *, outcome: _Outcome | None = None, error: str = ""
) -> dict[str, object]:
    # Never the secret, nor the URL (it may carry a token of the partner's).
    return {
        "delivery_id": delivery.pk,
        "partner_id": delivery.partner_id,
        "hash_list_id": delivery.hash_list_id,
        "seq": delivery.seq,
        "attempt": delivery.attempts,
        "status": delivery.status,
        "status_code": outcome.status_code if outcome else None,
        "error": outcome.error if outcome else error,
    }


# ------------------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------------------


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer like any other non-2xx: urllib would re-send a POST as a GET."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> None:
        return None


# Proxies come from the environment (https_proxy, no_proxy) as for any urllib client, so an
# egress proxy can stand between the workers and partners' endpoints.
_opener = urllib.request.build_opener(_NoRedirects)


def _post(attempt: _Attempt) -> _Outcome:
    body = webhook_body(list_slug=attempt.list_slug, seq=attempt.seq)
    timestamp = int(timezone.now().timestamp())
    request = urllib.request.Request(  # noqa: S310 - the scheme was checked: http(s) only
        attempt.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: webhook_signature(
                secret=attempt.secret, timestamp=timestamp, body=body
            ),
        },
    )
    try:
        with _opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            return _Outcome(ok=True, status_code=response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        if 300 <= exc.code < 400:
            return _Outcome(ok=False, status_code=exc.code, error=f"HTTP {exc.code}: redirect")
        return _Outcome(ok=False, status_code=exc.code, error=f"HTTP {exc.code}")
    except urllib.error.URLError as exc:
        return _Outcome(ok=False, error=_error_text(exc.reason))
    except (OSError, HTTPException, ValueError) as exc:
        return _Outcome(ok=False, error=_error_text(exc))


def _error_text(reason: object) -> str:
    """A short, readable account of a failed request (never the request's headers or body)."""
    if isinstance(reason, TimeoutError):
        return f"timed out after {TIMEOUT_SECONDS:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, RemoteDisconnected):
        return "connection closed without an answer"
    if isinstance(reason, ConnectionResetError):
        return "connection reset by the endpoint"
    if isinstance(reason, socket.gaierror):
        return "could not resolve the host name"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {reason.verify_message}"
    if isinstance(reason, ssl.SSLError):
        return f"TLS error: {reason.reason or reason}"
    if isinstance(reason, HTTPException):
        return f"bad HTTP answer: {type(reason).__name__}"
    if isinstance(reason, ValueError):
        return "invalid webhook URL"
    if isinstance(reason, OSError):
        return reason.strerror or type(reason).__name__
    return str(reason)[:200]
