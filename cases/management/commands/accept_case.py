"""Accept a case from the command line, as a named member of staff (cases.services.case_accept).

For operations work and scripted demos; the admin remains where staff normally decide cases.
"""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cases.models import Case
from cases.services import case_accept, case_number_normalise
from hashlists.models import HashEntry


class Command(BaseCommand):
    help = "Accept a received or in-review case and publish its hashes, as the given staff user."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("case_number", help="e.g. TID-7K3M-Q9XP (any case, dashes optional)")
        parser.add_argument(
            "--by", required=True, metavar="USERNAME", help="The staff member deciding."
        )

    def handle(self, *args: Any, case_number: str, by: str, **options: Any) -> None:
        number = case_number_normalise(case_number)
        case = Case.objects.filter(case_number=number).first() if number else None
        if case is None:
            raise CommandError(f"No case {case_number!r}.")
        User = get_user_model()
        staff = User.objects.filter(**{User.USERNAME_FIELD: by}).first()
        if staff is None:
            raise CommandError(f"No user {by!r}.")
        # The decision is recorded under this name: it must be someone allowed to make it.
        if not (staff.is_active and staff.is_staff and staff.has_perm("cases.review_case")):
            raise CommandError(
                f"User {by!r} may not decide cases: that takes an active staff account with the "
                "permission to work cases (the Case reviewer or Supervisor group)."
            )
        try:
            case = case_accept(case=case, staff=staff)
        except PermissionDenied as exc:  # the service checks again, inside its transaction
            raise CommandError(f"User {by!r} may not decide cases: {exc}") from exc
        except ValidationError as exc:
            reason = " ".join(exc.messages)
            raise CommandError(
                f"{case.case_number} cannot be accepted (it is {case.get_status_display()}): "
                f"{reason}"
            ) from exc
        active = (
            HashEntry.objects.filter(
                sources__media_item__case=case,
                sources__withdrawn_at__isnull=True,
                status=HashEntry.Status.ACTIVE,
            )
            .distinct()
            .count()
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Accepted {case.case_number} as {by}: {active} hash "
                f"{'entry is' if active == 1 else 'entries are'} active on {case.hash_list.slug}; "
                "partners see them in the feed once the sequencer has numbered them."
            )
        )
