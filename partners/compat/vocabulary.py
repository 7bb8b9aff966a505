"""StopNCII's words and ours: signal types, hash statuses and feedback values.

The values are those python-threatexchange parses (``threatexchange.exchanges.clients.stopncii.
api``: ``StopNCIISignalType``, ``StopNCIICaseStatus``, ``StopNCIICSPFeedbackValue``); a value it
does not know would make it drop the record, so only these are ever sent.
"""

from hashlists.models import HashType, ListChange, MediaType
from partners.models import MatchReport

Action = MatchReport.Action

# Signal types served, and the entries behind each. Other types (pHash, vPDQ, image MD5) have no
# StopNCII signal type that python-threatexchange maps to a signal it can match, so they are not
# exposed here: partners get them from the feed (/api/v1/lists/{slug}/changes).
IMAGE_PDQ = "ImagePDQ"
VIDEO_MD5 = "VideoMD5"
SIGNAL_TYPES = {
    IMAGE_PDQ: (HashType.PDQ, MediaType.IMAGE),
    VIDEO_MD5: (HashType.MD5, MediaType.VIDEO),
}
SIGNAL_TYPE_OF = {entry: signal for signal, entry in SIGNAL_TYPES.items()}
# SubmitFeedback carries no signal type (the client sends only the hash), but the two served
# types have different lengths: 64 hex is a PDQ, 32 hex an MD5.
SIGNAL_TYPE_BY_LENGTH = {64: IMAGE_PDQ, 32: VIDEO_MD5}

# An entry added to a list is Active; removed (for whatever reason: the reporter withdrew, staff
# removed it) it is Withdrawn, which the client's enum documents as "should be deleted by client".
# The reason is not said: the feed does not say it either. Received and Deleted are never sent.
ACTIVE = "Active"
WITHDRAWN = "Withdrawn"
STATUS_OF_OP = {ListChange.Op.ADD: ACTIVE, ListChange.Op.REMOVE: WITHDRAWN}

# Feedback values the client defines, and the outcome each records (SubmitFeedback).
# Tags refine the two decided values: Blocked with the tag ``restricted`` is "restricted" rather
# than "removed"; NotBlocked with the tag ``not_relevant`` (the content is not what the list is
# for: a false positive, or misuse) is "not_relevant" rather than "no action", and counts toward
# the flag that asks staff to review the entry.
# ``None``, ``QualityUnknown`` and ``Unknown`` say nothing about an outcome: they record a match
# pending review when there is no report yet and leave an existing one as it is (KEEP).
# ``Withdrawn`` and ``Deleted`` are statuses of a hash, not something a platform did: a 400.
KEEP = None
TAG_RESTRICTED = "restricted"
TAG_NOT_RELEVANT = "not_relevant"
FEEDBACK_VALUES = (
    "Unknown",
    "None",
    "QualityUnknown",
    "PendingReview",
    "Blocked",
    "NotBlocked",
    "Withdrawn",
    "Deleted",
)
REFUSED_FEEDBACK = frozenset({"Withdrawn", "Deleted"})


def tag_normalise(tag: str) -> str:
    """``Not-Relevant``, ``NotRelevant`` and ``not_relevant`` are one tag."""
    return "".join(c for c in tag.lower() if c.isalnum())


def action_for_feedback(value: str, tags: set[str] | frozenset[str]) -> str | None:
    """Our outcome for a feedback value and its tags, or KEEP (see above). The caller has already
    refused REFUSED_FEEDBACK."""
    normalised = {tag_normalise(tag) for tag in tags}
    if value == "Blocked":
        return Action.RESTRICTED if tag_normalise(TAG_RESTRICTED) in normalised else Action.REMOVED
    if value == "NotBlocked":
        if tag_normalise(TAG_NOT_RELEVANT) in normalised:
            return Action.NOT_RELEVANT
        return Action.NO_ACTION
    if value == "PendingReview":
        return Action.PENDING_REVIEW
    return KEEP


# The other way, for the CSPFeedbacks of FetchHashes: a partner reads back its own outcome.
FEEDBACK_FOR_ACTION = {
    Action.PENDING_REVIEW: ("PendingReview", []),
    Action.REMOVED: ("Blocked", []),
    Action.RESTRICTED: ("Blocked", [TAG_RESTRICTED]),
    Action.NO_ACTION: ("NotBlocked", []),
    Action.NOT_RELEVANT: ("NotBlocked", [TAG_NOT_RELEVANT]),
}
