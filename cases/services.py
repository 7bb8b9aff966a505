"""Writes on cases. Each public function is one transaction: validate everything, then write."""

import re
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from cases.hashers import pin_hash, pin_matches
from cases.models import CASE_NUMBER_PATTERN, Case, CaseNote, MediaItem, NearDuplicatePair
from cases.selectors import near_duplicate_counts
from cases.validation import media_items_clean
from hashlists.models import HashEntry, HashList
from hashlists.services import hash_entries_publish_for_items, hash_entries_unback_items
from tidportal.queueing import queue_after_commit

PIN_DIGITS = 8


def new_pin() -> str:
    """An 8-digit PIN from the OS's CSPRNG (wrong guesses are throttled and locked out per case)."""
    return "".join(secrets.choice("0123456789") for _ in range(PIN_DIGITS))


def case_create(
    *,
    reporter: str,
    under_18_when_made: bool,
    items: Sequence[Any],
    hash_list: HashList | None = None,
) -> tuple[Case, str]:
    """Record a new report and its files' hashes; return the case and its PIN (shown once).

    Raises ValidationError, naming each bad field, when the reporter is unknown, the person was
    not under 18, or any item is malformed: then nothing is stored. Stores no data about the
    reporter beyond the answers given.
    """
    errors: dict[str, list[str]] = {}
    if reporter not in Case.Reporter.values:
        errors["reporter"] = [
            _("Tell us who is reporting: yourself, a parent, or a trusted adult.")
        ]
    if under_18_when_made is not True:
        errors["under_18_when_made"] = [
            _("This service is for images taken when the person pictured was under 18.")
        ]
    try:
        cleaned = media_items_clean(items)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    target = hash_list or HashList.objects.get(slug=settings.TID_DEFAULT_HASH_LIST)
    pin = new_pin()
    # Case numbers are random; a collision (1 in 2^40 per pair) just draws again.
    for _attempt in range(5):
        try:
            with transaction.atomic():
                case = Case.objects.create(
                    reporter=reporter,
                    under_18_when_made=True,
                    hash_list=target,
                    pin_hash=pin_hash(pin),
                )
                MediaItem.objects.bulk_create(MediaItem(case=case, **item) for item in cleaned)
                _queue_near_duplicates(case)
        except IntegrityError:
            if Case.objects.filter(case_number=case.case_number).exists():
                continue
            raise
        return case, pin
    raise RuntimeError("Could not draw a free case number")  # pragma: no cover - 2^-200


def case_number_normalise(raw: object) -> str:
    """Canonical form of a case number as a person may type it: any case, spaces or no dashes,
    and the look-alikes O/I/L for 0/1/1 (the alphabet has none of those letters)."""
    if not isinstance(raw, str):
        return ""
    text = "".join(ch for ch in raw.upper() if ch.isalnum())
    text = text.removeprefix("TID")
    text = text.translate(str.maketrans({"O": "0", "I": "1", "L": "1"}))
    number = f"TID-{text[:4]}-{text[4:]}"
    # isalnum() and upper() let through letters and digits of other scripts ("¹", "ß" -> "SS").
    return number if len(text) == 8 and re.fullmatch(CASE_NUMBER_PATTERN, number) else ""


# ------------------------------------------------------------------------------------------------
# Staff workflow: received -> in review (assigned) -> accepted | not accepted | duplicate;
# withdrawn by the reporter at any point; supervisors may reopen a decision.
# ------------------------------------------------------------------------------------------------

OPEN_FOR_DECISION = (Case.Status.RECEIVED, Case.Status.IN_REVIEW)
DECIDED = (Case.Status.ACCEPTED, Case.Status.NOT_ACCEPTED, Case.Status.DUPLICATE)


def _require(staff: AbstractBaseUser, permission: str) -> None:
    """Services check permissions themselves, so every caller (admin, command, API) is covered."""
    if not staff.has_perm(permission):
        raise PermissionDenied(_("You do not have permission to do this."))


def _lock_for_decision(case: Case) -> Case:
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.status not in OPEN_FOR_DECISION:
        raise ValidationError(
            {
                "status": _(
                    "Case %(case)s is %(status)s: only cases received or in review can be decided."
                )
                % {"case": case.case_number, "status": case.get_status_display().lower()}
            }
        )
    return case


def _record_decision(case: Case, staff: AbstractBaseUser, reason: str, **fields: Any) -> Case:
    """Save a decision on a locked case: its fields, who and when, and why (for the history)."""
    for name, value in fields.items():
        setattr(case, name, value)
    case.decided_by, case.decided_at = staff, timezone.now()
    case.assigned_to = case.assigned_to or staff
    case._change_reason = reason
    case.save(update_fields=[*fields, "decided_by", "decided_at", "assigned_to", "updated_at"])
    return case


@transaction.atomic
def case_assign(
    *, case: Case, staff: AbstractBaseUser, assignee: AbstractBaseUser | None = None
) -> Case:
    """Assign a received or in-review case to ``assignee`` (default: ``staff``); it is then in
    review. Raises PermissionDenied without ``cases.review_case`` and ValidationError for a case
    that is already decided or withdrawn."""
    _require(staff, "cases.review_case")
    case = _lock_for_decision(case)
    case.status, case.assigned_to = Case.Status.IN_REVIEW, assignee or staff
    case._change_reason = "assigned"
    case.save(update_fields=["status", "assigned_to", "updated_at"])
    return case


@transaction.atomic
def case_accept(*, case: Case, staff: AbstractBaseUser) -> Case:
    """Accept a case in review and publish its files' publishable hashes on its list.

    Guarantees: the case's entries are active and their ``add`` changes recorded in the same
    transaction (the sequencer numbers them once it commits). Raises PermissionDenied without
    ``cases.review_case``, ValidationError if the case is not received or in review.
    """
    _require(staff, "cases.review_case")
    case = _record_decision(
        _lock_for_decision(case), staff, "accepted", status=Case.Status.ACCEPTED
    )
    hash_entries_publish_for_items(hash_list=case.hash_list, items=case.items.all())
    return case


def case_accept_many(*, cases: Sequence[Case], staff: AbstractBaseUser) -> tuple[int, list[str]]:
    """Accept several cases, each in its own transaction: one that cannot be accepted does not
    stop the others. Returns how many were accepted and the messages for those that were not.
    Raises PermissionDenied without ``cases.bulk_accept_case``."""
    _require(staff, "cases.bulk_accept_case")
    accepted, problems = 0, []
    for case in cases:
        try:
            case_accept(case=case, staff=staff)
            accepted += 1
        except ValidationError as exc:
            problems.extend(exc.messages)
    return accepted, problems


@transaction.atomic
def case_reject(*, case: Case, staff: AbstractBaseUser, reason: str) -> Case:
    """Decide that a case is not accepted, with a reason category the reporter will see.
    Nothing is published. Raises ValidationError for an unknown reason or a closed case."""
    _require(staff, "cases.review_case")
    if reason not in Case.RejectionReason.values or not reason:
        raise ValidationError({"reason": _("Choose why the case is not accepted.")})
    return _record_decision(
        _lock_for_decision(case),
        staff,
        f"not accepted: {reason}",
        status=Case.Status.NOT_ACCEPTED,
        rejection_reason=reason,
    )


@transaction.atomic
def case_mark_duplicate(*, case: Case, staff: AbstractBaseUser, original: Case) -> Case:
    """Mark ``case`` a duplicate of ``original`` (followed to its own original, if it is one).
    Nothing is published from the duplicate. Raises ValidationError for a case marked a duplicate
    of itself or of a withdrawn case, or a closed case."""
    _require(staff, "cases.review_case")
    original = Case.objects.get(pk=original.pk)
    while original.status == Case.Status.DUPLICATE and original.duplicate_of_id:
        original = Case.objects.get(pk=original.duplicate_of_id)
    if original.pk == case.pk:
        raise ValidationError({"original": _("A case cannot be a duplicate of itself.")})
    if original.status == Case.Status.WITHDRAWN:
        raise ValidationError({"original": _("A withdrawn case cannot be the original.")})
    return _record_decision(
        _lock_for_decision(case),
        staff,
        f"duplicate of {original.case_number}",
        status=Case.Status.DUPLICATE,
        duplicate_of=original,
    )


@transaction.atomic
def case_reopen(*, case: Case, staff: AbstractBaseUser) -> Case:
    """Supervisor override: take a decided case back into review. An accepted case's hashes
    leave the list unless another accepted case backs them (``remove`` changes recorded).
    Raises PermissionDenied without ``cases.override_case``, ValidationError if not decided."""
    _require(staff, "cases.override_case")
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.status not in DECIDED:
        raise ValidationError({"status": _("Only a decided case can be reopened.")})
    was_accepted = case.status == Case.Status.ACCEPTED
    case.status, case.rejection_reason, case.duplicate_of = Case.Status.IN_REVIEW, "", None
    case.decided_by, case.decided_at, case.assigned_to = None, None, staff
    case._change_reason = "reopened by a supervisor"
    case.save(
        update_fields=[
            "status",
            "rejection_reason",
            "duplicate_of",
            "decided_by",
            "decided_at",
            "assigned_to",
            "updated_at",
        ]
    )
    if was_accepted:
        hash_entries_unback_items(
            items=case.items.all(), reason=HashEntry.RemovalReason.NO_BACKING_CASE
        )
    return case


@transaction.atomic
def case_note_add(*, case: Case, staff: AbstractBaseUser, text: str) -> CaseNote:
    """Add an internal note (never shown to the reporter)."""
    _require(staff, "cases.add_casenote")
    text = text.strip()
    if not text:
        raise ValidationError({"text": _("Write the note first.")})
    return CaseNote.objects.create(case=case, author=staff, text=text)


@transaction.atomic
def case_withdraw(*, case: Case) -> Case:
    """Withdraw a case at the reporter's request, at any point; withdrawing again changes nothing.

    Every entry that only this case backed is removed from the list (a ``remove`` change in the
    feed); entries other accepted cases also back stay. The hashes stay on the case as a record.
    """
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.status == Case.Status.WITHDRAWN:
        return case
    case.status, case.withdrawn_at = Case.Status.WITHDRAWN, timezone.now()
    # A withdrawn case carries no decision reason or duplicate link (database constraints).
    case.rejection_reason, case.duplicate_of = "", None
    case._change_reason = "withdrawn by the reporter"
    case.save(
        update_fields=["status", "withdrawn_at", "rejection_reason", "duplicate_of", "updated_at"]
    )
    hash_entries_unback_items(items=case.items.all(), reason=HashEntry.RemovalReason.WITHDRAWN)
    return case


CASE_OPEN_FOR_ITEMS = (Case.Status.RECEIVED, Case.Status.IN_REVIEW, Case.Status.ACCEPTED)


@transaction.atomic
def case_items_add(*, case: Case, items: Sequence[Any]) -> list[MediaItem]:
    """Add reported files to an open case (received, in review or accepted).

    An accepted case goes back to review so that staff look at the new files; what it already
    published stays on the list. Raises ValidationError (nothing stored) for malformed items, for
    files already on the case, and for closed cases.
    """
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.status not in CASE_OPEN_FOR_ITEMS:
        raise ValidationError(
            {"case": [_("Files can no longer be added to this case. You can start a new report.")]}
        )
    cleaned = media_items_clean(items)
    existing = set(case.items.values_list("media_type", "md5"))
    errors = {
        f"items.{index}.md5": [_("This file is already part of your case.")]
        for index, item in enumerate(cleaned)
        if (item["media_type"], item["md5"]) in existing
    }
    if errors:
        raise ValidationError(errors)
    if case.status == Case.Status.ACCEPTED:
        case.status = Case.Status.IN_REVIEW
        case._change_reason = "files added by the reporter"
        case.save(update_fields=["status", "updated_at"])
    created = MediaItem.objects.bulk_create(MediaItem(case=case, **item) for item in cleaned)
    _queue_near_duplicates(case)
    return created


def _queue_near_duplicates(case: Case) -> None:
    from cases import tasks

    queue_after_commit(tasks.case_near_duplicates_refresh, case_id=case.pk)


# ------------------------------------------------------------------------------------------------
# Reporter access: case number + PIN, with throttled, time-limited lockouts
# ------------------------------------------------------------------------------------------------

# Checked when the case number is unknown, so that an unknown case costs the same time as a
# wrong PIN and timing does not reveal which case numbers exist.
_DUMMY_PIN_HASH = pin_hash("00000000")


class CaseAccessDenied(Exception):
    """Unknown case number or wrong PIN: deliberately the same answer for both."""


class CaseLocked(Exception):
    """Too many wrong PINs; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


def case_access_for_reporter(*, case_number: object, pin: object, client: str) -> Case:
    """The case that ``case_number`` and ``pin`` open, for the anonymous ``client`` key.

    Raises CaseAccessDenied for an unknown case or a wrong PIN, and CaseLocked when this client
    made TID_PIN_MAX_FAILURES wrong guesses on this case, or the case received
    TID_PIN_CASE_MAX_FAILURES from anywhere, within TID_PIN_LOCKOUT_SECONDS. A right PIN resets
    the case's count. Stores nothing about the client but a counter under an expiring cache key.
    """
    number = case_number_normalise(case_number)
    pin_text = "".join(ch for ch in pin if ch.isdigit()) if isinstance(pin, str) else ""
    lock_key = f"pinlock:{number}:{client}"
    locked_until = cache.get(lock_key)
    now = timezone.now().timestamp()
    if locked_until and locked_until > now:
        raise CaseLocked(int(locked_until - now) + 1)
    case = Case.objects.filter(case_number=number).first() if number else None
    if case is not None and case.pin_locked_until and case.pin_locked_until > timezone.now():
        raise CaseLocked(int((case.pin_locked_until - timezone.now()).total_seconds()) + 1)
    if case is None:
        pin_matches(pin_text, _DUMMY_PIN_HASH)
        _pin_failure_count(number=number or "?", client=client)
        raise CaseAccessDenied
    if not pin_text or not pin_matches(pin_text, case.pin_hash):
        _pin_failure_count(number=number, client=client)
        _pin_failure_record(case=case)
        raise CaseAccessDenied
    if case.pin_failures:
        Case.objects.filter(pk=case.pk).update(pin_failures=0, pin_failures_since=None)
    cache.delete(f"pinfail:{number}:{client}")
    return case


def _pin_failure_count(*, number: str, client: str) -> None:
    key = f"pinfail:{number}:{client}"
    timeout = settings.TID_PIN_LOCKOUT_SECONDS
    cache.add(key, 0, timeout=timeout)
    if cache.incr(key) >= settings.TID_PIN_MAX_FAILURES:
        cache.set(f"pinlock:{number}:{client}", timezone.now().timestamp() + timeout, timeout)
        cache.delete(key)


@transaction.atomic
def _pin_failure_record(*, case: Case) -> None:
    """Count a wrong PIN against the case; lock it after TID_PIN_CASE_MAX_FAILURES within one
    window of TID_PIN_LOCKOUT_SECONDS. The window is what stops one place from locking a case
    again and again: a single client is locked out after TID_PIN_MAX_FAILURES for as long as the
    window lasts, so it alone can never fill a window; only guessing spread over many clients
    (what the case lock is for) can."""
    case = Case.objects.select_for_update().get(pk=case.pk)
    now = timezone.now()
    window = timedelta(seconds=settings.TID_PIN_LOCKOUT_SECONDS)
    if case.pin_failures_since is None or now - case.pin_failures_since >= window:
        case.pin_failures, case.pin_failures_since = 0, now
    case.pin_failures += 1
    if case.pin_failures >= settings.TID_PIN_CASE_MAX_FAILURES:
        case.pin_failures, case.pin_failures_since = 0, None
        case.pin_locked_until = now + window
    # Counters only: not worth a history record (they are excluded from it anyway).
    Case.objects.filter(pk=case.pk).update(
        pin_failures=case.pin_failures,
        pin_failures_since=case.pin_failures_since,
        pin_locked_until=case.pin_locked_until,
    )


# ------------------------------------------------------------------------------------------------
# Near-duplicates across cases
# ------------------------------------------------------------------------------------------------


@transaction.atomic
def case_near_duplicates_refresh(*, case: Case) -> int:
    """Record which other cases hold near-duplicates of this case's files, and recount this
    case and each of them; flag a case whose files hit TID_MISUSE_NEAR_DUPLICATE_CASES or more
    unrelated cases (a duplicate and its original count once). Idempotent. Returns how many other
    cases this case is near."""
    from cases.near_duplicates import case_near_duplicates

    found = case_near_duplicates(case=case)
    others = sorted(hit.case.pk for hit in found.cases)
    # Rows are written and locked in one global order (by case id), so that refreshes of
    # overlapping cases running at once wait for each other instead of deadlocking.
    pairs = sorted([(case.pk, o) for o in others] + [(o, case.pk) for o in others])
    NearDuplicatePair.objects.bulk_create(
        [NearDuplicatePair(case_id=a, other_id=b) for a, b in pairs], ignore_conflicts=True
    )
    affected = sorted([case.pk, *others])
    for case_id, near, misuse in near_duplicate_counts(case_ids=affected):
        # Counters, not decisions: updated in place without a history record each time.
        Case.objects.filter(pk=case_id).update(near_duplicate_cases=near, misuse_suspected=misuse)
    return len(others)
