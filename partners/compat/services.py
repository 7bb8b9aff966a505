"""Writes of the StopNCII-compatible API: SubmitFeedback recorded as match reports.

A feedback is a platform's word on a hash it fetched: that its content matched it, and what it
did (vocabulary.py maps StopNCII's values to our outcomes). Each becomes a MatchReport through the
match service (partners.matches), the same rows the partner API writes, so staff, the dashboard
and the reporter's status page ("platforms that matched / removed") see them.

One report per partner and list entry, under a reference derived from the feedback itself,
``stopncii:<signal type>:<hash>:<entry id>``: sending feedback on a hash again does not add a
report; a new outcome is recorded on the existing one (the match service's later-outcome rule:
the newest outcome stands, nothing goes back to pending review). A hash on two of the partner's
lists is two entries, so two reports: each backing case counts the platform. The client sends no
times, distance or content reference: the match and the action are dated when we receive them,
the distance is 0 (the feedback names the listed hash itself), the content reference is empty.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from partners.compat import vocabulary
from partners.compat.selectors import stopncii_entries_for_hashes
from partners.matches import MAX_BATCH, match_report_outcome_record, match_reports_submit
from partners.models import MatchReport, Partner

FIELD_PREFIX = "hashFeedbacks"


@dataclass(frozen=True)
class FeedbackResult:
    count: int  # feedbacks received
    recorded: int  # reports created
    updated: int  # reports given a new outcome
    unchanged: int  # reports left as they were


def stopncii_client_ref(*, signal_type: str, hash_value: str, entry_public_id: str) -> str:
    return f"stopncii:{signal_type}:{hash_value}:{entry_public_id}"


@transaction.atomic
def stopncii_feedback_submit(
    *, partner: Partner, feedbacks: Sequence[Mapping[str, Any]]
) -> FeedbackResult:
    """Record ``partner``'s feedbacks (``hashValue``, ``feedbackValue``, ``tags``, shape-checked
    by the serializer) as match reports, all or nothing.

    Raises ValidationError keyed ``hashFeedbacks.<index>.<field>`` for a hash that is on none of
    the partner's lists (or not one FetchHashes serves: the same message), a hash sent twice, or
    a refused feedback value; then nothing is written. Creates the missing reports in batches of
    the match service's maximum, then records new outcomes on existing ones.
    """
    now = timezone.now()
    errors: dict[str, list[str]] = {}
    hashes = []
    first_seen: dict[str, int] = {}
    for index, feedback in enumerate(feedbacks):
        value = feedback["hashValue"]
        if feedback["feedbackValue"] in vocabulary.REFUSED_FEEDBACK:
            errors[f"{FIELD_PREFIX}.{index}.feedbackValue"] = [
                _("%(value)s is a status of a hash, not an outcome.")
                % {"value": feedback["feedbackValue"]}
            ]
        if value in first_seen:
            errors[f"{FIELD_PREFIX}.{index}.hashValue"] = [
                _("Repeated in this batch (first at item %(index)d).")
                % {"index": first_seen[value]}
            ]
        first_seen.setdefault(value, index)
        hashes.append((vocabulary.SIGNAL_TYPE_BY_LENGTH[len(value)], value))
    entries = stopncii_entries_for_hashes(partner=partner, hashes=hashes)

    # (feedback index, client_ref, entry public id, action or KEEP), one per entry.
    wanted: list[tuple[int, str, str, str | None]] = []
    for index, (feedback, key) in enumerate(zip(feedbacks, hashes, strict=True)):
        if key not in entries:
            errors.setdefault(f"{FIELD_PREFIX}.{index}.hashValue", []).append(
                _("No entry with this hash is on a list you may read.")
            )
            continue
        action = vocabulary.action_for_feedback(
            feedback["feedbackValue"], frozenset(feedback.get("tags") or ())
        )
        for _pk, public_id in entries[key]:
            ref = stopncii_client_ref(
                signal_type=key[0], hash_value=key[1], entry_public_id=public_id
            )
            wanted.append((index, ref, public_id, action))
    if errors:
        raise ValidationError(errors)

    existing = _reports_by_ref(partner=partner, refs=[ref for _i, ref, _e, _a in wanted])
    new = [item for item in wanted if item[1] not in existing]
    recorded = 0
    for start in range(0, len(new), MAX_BATCH):
        chunk = new[start : start + MAX_BATCH]
        try:
            result = match_reports_submit(
                partner=partner,
                items=[
                    {
                        "client_ref": ref,
                        "entry_id": public_id,
                        "distance": 0,
                        "matched_at": now,
                        "action": action or MatchReport.Action.PENDING_REVIEW,
                        "action_at": now,
                    }
                    for _index, ref, public_id, action in chunk
                ],
                error_prefix="item",
            )
        except ValidationError as exc:
            raise _errors_for_feedbacks(exc, [index for index, *_rest in chunk]) from None
        recorded += result.created_count
        raced = [item.client_ref for item in result.items if not item.created]
        if raced:  # sent at the same time by another request: give it this outcome as well
            existing.update(_reports_by_ref(partner=partner, refs=raced))

    updated = 0
    for index, ref, _public_id, action in wanted:
        if ref not in existing:
            continue
        report_id, current = existing[ref]
        if action in (vocabulary.KEEP, current, MatchReport.Action.PENDING_REVIEW):
            continue  # no outcome, the same one, or pending review (never back from a decision)
        try:
            # Dated by the match service once it holds the report, so never before the match.
            match_report_outcome_record(partner=partner, report_id=report_id, action=action)
        except ValidationError as exc:
            raise _errors_for_feedbacks(exc, [index]) from None
        updated += 1
    return FeedbackResult(
        count=len(feedbacks),
        recorded=recorded,
        updated=updated,
        unchanged=len(wanted) - recorded - updated,
    )


def _reports_by_ref(*, partner: Partner, refs: list[str]) -> dict[str, tuple[Any, str]]:
    """The partner's reports with these client_refs: ref -> (public id, action)."""
    return {
        ref: (public_id, action)
        for ref, public_id, action in MatchReport.objects.filter(
            partner=partner, client_ref__in=refs
        ).values_list("client_ref", "public_id", "action")
    }


def _errors_for_feedbacks(exc: ValidationError, indexes: list[int]) -> ValidationError:
    """The match service's errors (``item.<i>.<field>`` or plain field names) as errors of the
    feedbacks they came from, on the field the partner sent."""
    fields: dict[str, list[str]] = {}
    for key, messages in exc.message_dict.items():
        parts = key.split(".")
        index = indexes[int(parts[1])] if len(parts) == 3 and parts[1].isdigit() else indexes[0]
        field = "feedbackValue" if parts[-1] in ("action", "action_at") else "hashValue"
        fields.setdefault(f"{FIELD_PREFIX}.{index}.{field}", []).extend(messages)
    return ValidationError(fields)
