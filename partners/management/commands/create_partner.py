"""Create a partner platform and its first API key from the command line.

For set-ups without the admin at hand (scripts, a new deployment). The API key is printed once and
stored only as a digest, as when staff create one in the admin.
"""

import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from hashlists.models import HashList
from partners.models import ApiKey
from partners.services import api_key_create, partner_create


def validation_error_text(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(
            f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()
        )
    return " ".join(exc.messages)


class Command(BaseCommand):
    help = (
        "Create a partner allowed to read the given hash lists, with one API key. The key is "
        "printed once and never stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The platform's name, e.g. 'Example Platform'.")
        parser.add_argument(
            "--lists", nargs="+", required=True, metavar="SLUG", help="Lists it may read."
        )
        parser.add_argument(
            "--scopes",
            nargs="+",
            required=True,
            metavar="SCOPE",
            help=f"What the key may do: one or more of {', '.join(ApiKey.Scope.values)}.",
        )
        parser.add_argument("--email", default="", help="Its trust & safety contact.")
        parser.add_argument(
            "--webhook-url",
            default="",
            help="Where to POST 'list changed' notifications (a signing secret is generated).",
        )
        parser.add_argument(
            "--key-name", default="default", help="What or who uses the key (default: default)."
        )

    def handle(
        self,
        *args: Any,
        name: str,
        lists: list[str],
        scopes: list[str],
        email: str,
        webhook_url: str,
        key_name: str,
        **options: Any,
    ) -> None:
        slugs = list(dict.fromkeys(lists))
        found = {hl.slug: hl for hl in HashList.objects.filter(slug__in=slugs)}
        unknown = [slug for slug in slugs if slug not in found]
        if unknown:
            known = ", ".join(HashList.objects.order_by("slug").values_list("slug", flat=True))
            raise CommandError(
                f"Unknown hash list(s): {', '.join(unknown)}. Known lists: {known or 'none'}."
            )
        try:
            # One transaction: a key that cannot be made (an unknown scope, say) leaves no partner
            # behind, so the command can simply be run again with the mistake corrected.
            with transaction.atomic():
                partner = partner_create(
                    name=name,
                    contact_email=email,
                    readable_lists=[found[slug] for slug in slugs],
                )
                webhook_secret = ""
                if webhook_url:
                    webhook_secret = secrets.token_urlsafe(32)
                    partner.webhook_url, partner.webhook_secret = webhook_url, webhook_secret
                    partner.full_clean()
                    partner.save(update_fields=["webhook_url", "webhook_secret", "updated_at"])
                key, raw_key = api_key_create(partner=partner, name=key_name, scopes=scopes)
        except ValidationError as exc:
            raise CommandError(
                f"Could not create partner {name!r}: {validation_error_text(exc)}"
            ) from exc

        self.stdout.write(
            self.style.SUCCESS(
                f"Created partner {partner.name!r} (slug {partner.slug}), reading: "
                f"{', '.join(slugs)}."
            )
        )
        self.stdout.write(f"API key {key.name!r} with scopes {', '.join(key.scopes)}:")
        self.stdout.write(f"  {raw_key}")
        self.stdout.write(
            self.style.WARNING(
                "This key is shown once and stored only as a digest: copy it now. "
                "(Lost keys are revoked and replaced in the admin.)"
            )
        )
        if webhook_secret:
            self.stdout.write(
                f"Webhook {partner.webhook_url}: signing secret {webhook_secret} "
                "(the partner verifies each notification's HMAC-SHA256 with it)."
            )
