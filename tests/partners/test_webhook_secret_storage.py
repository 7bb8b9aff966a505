"""Partners' webhook secrets are encrypted at rest (tidportal/crypto.py), and still sign webhooks.

The column is read with a plain SQL cursor, as a database dump would see it. Key rotation is
``override_settings`` of ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS``, as an operator sets them.
"""

import html
import json
import logging
import re
from collections.abc import Iterator
from io import StringIO

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client, override_settings
from django.urls import reverse

from partners.models import Partner, WebhookDelivery
from partners.webhooks import UNDECRYPTABLE_ERROR
from tests.partners.test_webhooks import SECRET, sequence_changes, subscriber
from tests.partners.webhook_receiver import Receiver, running_receiver, verify_signature
from tidportal import crypto

OLD_KEY = settings.SECRET_KEY
NEW_KEY = "rotated-" + "n" * 50
rotated = override_settings(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[OLD_KEY])
old_key_lost = override_settings(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[])
rotation_done = old_key_lost  # the same settings, once every value is under the new key


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


def stored_column(partner: Partner) -> str:
    """The column as the database holds it (and a dump or backup would show it)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_secret FROM partners_partner WHERE id = %s", [partner.pk])
        return cursor.fetchone()[0]


def store_raw(partner: Partner, value: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE partners_partner SET webhook_secret = %s WHERE id = %s", [value, partner.pk]
        )


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def fresh(partner: Partner) -> Partner:
    return Partner.objects.get(pk=partner.pk)


# ------------------------------------------------------------------------------------------------
# At rest
# ------------------------------------------------------------------------------------------------


def set_by_save(partner: Partner) -> None:
    partner.webhook_secret = SECRET
    partner.full_clean()
    partner.save()


def set_by_update(partner: Partner) -> None:
    Partner.objects.filter(pk=partner.pk).update(webhook_secret=SECRET)


def set_by_bulk_update(partner: Partner) -> None:
    partner.webhook_secret = SECRET
    Partner.objects.bulk_update([partner], ["webhook_secret"])


@pytest.mark.parametrize("set_secret", [set_by_save, set_by_update, set_by_bulk_update])
def test_a_secret_is_stored_encrypted_however_it_is_written_and_reads_back(set_secret, partner):
    set_secret(partner)

    stored = stored_column(partner)
    assert stored.startswith(crypto.PREFIX) and SECRET not in stored
    assert "k" * 8 not in stored  # not merely the secret with a prefix
    assert fresh(partner).webhook_secret == SECRET
    assert Partner.objects.values_list("webhook_secret", flat=True).get(pk=partner.pk) == SECRET


def test_the_same_secret_is_stored_differently_each_time(default_list):
    first = subscriber("First Platform", default_list, "https://a.example/hook")
    second = subscriber("Second Platform", default_list, "https://b.example/hook")

    assert fresh(first).webhook_secret == fresh(second).webhook_secret == SECRET
    assert stored_column(first) != stored_column(second)


def test_an_empty_secret_stays_empty_and_means_none_is_set(partner):
    assert stored_column(partner) == ""
    assert fresh(partner).webhook_secret == ""
    assert Partner.objects.filter(webhook_secret="").count() == 1


def test_create_partner_prints_the_new_secret_once_and_stores_it_encrypted(default_list):
    out = run(
        "create_partner",
        "Hooked",
        "--lists",
        "take-it-down",
        "--scopes",
        "lists:read",
        "--webhook-url",
        "https://hooks.example.org/tid",
    )

    partner = Partner.objects.get(name="Hooked")
    assert partner.webhook_url == "https://hooks.example.org/tid"
    assert len(partner.webhook_secret) >= 40 and out.count(partner.webhook_secret) == 1
    assert partner.webhook_secret not in stored_column(partner)


def test_a_dump_holds_the_ciphertext_and_loads_back_to_the_same_secret(default_list, tmp_path):
    partner = subscriber("Dumped Platform", default_list, "https://hooks.example.org/tid")

    dump = run("dumpdata", "partners.partner")

    assert SECRET not in dump
    (row,) = json.loads(dump)
    dumped = row["fields"]["webhook_secret"]
    assert crypto.decrypt(dumped) == SECRET
    Partner.objects.filter(pk=partner.pk).update(webhook_secret="")
    (tmp_path / "partners.json").write_text(dump)
    call_command("loaddata", tmp_path / "partners.json", verbosity=0)
    assert stored_column(partner) == dumped and fresh(partner).webhook_secret == SECRET


@pytest.mark.parametrize(
    ("secret", "message"),
    [("x" * 129, "at most 128 characters"), (crypto.PREFIX + "abc", "cannot start with")],
)
def test_a_secret_too_long_or_looking_like_ciphertext_is_refused(secret, message, partner):
    partner.webhook_secret = secret

    with pytest.raises(ValidationError, match=message):
        partner.full_clean()


def test_plaintext_left_by_the_previous_release_is_read_and_the_command_encrypts_it(
    default_list, receiver, django_capture_on_commit_callbacks
):
    # The release before encryption, still running during a rolling deploy, writes plaintext.
    partner = subscriber("Receiving Platform", default_list, receiver.url)
    store_raw(partner, SECRET)

    assert fresh(partner).webhook_secret == SECRET
    sequence_changes(django_capture_on_commit_callbacks, default_list)
    request = receiver.requests[0]
    assert verify_signature(secret=SECRET, headers=request.headers, body=request.body)

    out = run("secrets_reencrypt")

    assert "partners.Partner.webhook_secret: 0 re-encrypted, 1 encrypted (were plaintext)" in out
    assert crypto.is_under_current_key(stored_column(partner))
    assert fresh(partner).webhook_secret == SECRET


# ------------------------------------------------------------------------------------------------
# Signing
# ------------------------------------------------------------------------------------------------


def test_a_webhook_signed_with_the_stored_secret_verifies_with_the_partners_secret(
    default_list, receiver, django_capture_on_commit_callbacks
):
    partner = subscriber("Receiving Platform", default_list, receiver.url)
    assert SECRET not in stored_column(partner)

    sequence_changes(django_capture_on_commit_callbacks, default_list)

    (request,) = receiver.requests
    assert verify_signature(secret=SECRET, headers=request.headers, body=request.body)
    assert WebhookDelivery.objects.get().status == WebhookDelivery.Status.DELIVERED


# ------------------------------------------------------------------------------------------------
# Rotating SECRET_KEY
# ------------------------------------------------------------------------------------------------


def test_after_a_rotation_old_secrets_still_sign_and_the_command_moves_them_to_the_new_key(
    default_list, receiver, django_capture_on_commit_callbacks
):
    partner = subscriber("Receiving Platform", default_list, receiver.url)
    under_old_key = stored_column(partner)

    with rotated:
        assert fresh(partner).webhook_secret == SECRET
        assert not crypto.is_under_current_key(under_old_key)
        sequence_changes(django_capture_on_commit_callbacks, default_list)
        (request,) = receiver.requests
        assert verify_signature(secret=SECRET, headers=request.headers, body=request.body)

        with pytest.raises(CommandError, match="1 value"):
            run("secrets_reencrypt", "--check")
        assert stored_column(partner) == under_old_key  # --check changes nothing

        out = run("secrets_reencrypt")
        assert "1 re-encrypted, 0 encrypted (were plaintext), 0 already under" in out

        under_new_key = stored_column(partner)
        assert under_new_key != under_old_key and crypto.is_under_current_key(under_new_key)
        assert "1 already under the current key" in run("secrets_reencrypt")
        assert stored_column(partner) == under_new_key  # a second run leaves it alone

    with rotation_done:  # the old key removed from the fallbacks
        assert fresh(partner).webhook_secret == SECRET
        assert "Every value is under the current key." in run("secrets_reencrypt", "--check")


def test_a_secret_under_a_lost_key_is_never_used_and_the_delivery_says_why(
    default_list, receiver, django_capture_on_commit_callbacks, caplog
):
    partner = subscriber("Receiving Platform", default_list, receiver.url)
    stored = stored_column(partner)

    with old_key_lost, caplog.at_level(logging.ERROR, logger="partners.webhooks"):
        secret = fresh(partner).webhook_secret
        assert isinstance(secret, crypto.UnreadableSecret) and secret
        sequence_changes(django_capture_on_commit_callbacks, default_list)

        with pytest.raises(CommandError, match="1 value.*cannot be decrypted"):
            run("secrets_reencrypt")

    assert receiver.requests == []  # nothing signed with anything else
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.GAVE_UP
    assert delivery.last_error == UNDECRYPTABLE_ERROR
    assert "the server's key changed" in delivery.last_error
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert caplog.records[0].error == UNDECRYPTABLE_ERROR
    assert stored_column(partner) == stored  # kept: restoring the key would make it readable


def test_a_value_altered_in_the_database_is_unreadable_too(partner):
    set_by_update(partner)
    stored = stored_column(partner)
    store_raw(partner, stored[:-4] + ("AAAA" if not stored.endswith("AAAA") else "BBBB"))

    assert isinstance(fresh(partner).webhook_secret, crypto.UnreadableSecret)
    with pytest.raises(crypto.SecretUnreadable, match="SECRET_KEY_FALLBACKS"):
        crypto.decrypt(stored_column(partner))


# ------------------------------------------------------------------------------------------------
# The admin
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client: Client, django_user_model) -> Client:  # noqa: ANN001
    client.force_login(django_user_model.objects.create_superuser(username="root", password="pw"))
    return client


def change_url(partner: Partner) -> str:
    return reverse("admin:partners_partner_change", args=[partner.pk])


def save_in_admin(client: Client, partner: Partner, *, webhook_secret: str) -> None:
    """Post the partner's change form as staff would, changing only the secret field."""
    page = client.get(change_url(partner))
    data = {
        "name": partner.name,
        "slug": partner.slug,
        "contact_email": partner.contact_email,
        "readable_lists": [hl.pk for hl in partner.readable_lists.all()],
        "webhook_url": partner.webhook_url,
        "webhook_secret": webhook_secret,
        "_save": "Save",
    }
    for inline in page.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data |= {management[name].html_name: management[name].value() for name in management.fields}
    response = client.post(change_url(partner), data)
    assert response.status_code == 302, response.context["adminform"].form.errors


def test_the_admin_never_shows_the_secret_and_keeps_it_when_the_field_is_left_empty(
    staff_client, default_list
):
    partner = subscriber("Receiving Platform", default_list, "https://hooks.example.org/tid")

    page = staff_client.get(change_url(partner)).content.decode()
    assert SECRET not in page and stored_column(partner) not in page
    assert re.search(r'<input type="password" name="webhook_secret"[^>]*>', page)
    assert "leave empty to keep the current secret" in page

    save_in_admin(staff_client, partner, webhook_secret="")
    assert fresh(partner).webhook_secret == SECRET

    save_in_admin(staff_client, partner, webhook_secret="a-new-secret-for-the-partner")
    assert fresh(partner).webhook_secret == "a-new-secret-for-the-partner"
    assert "a-new-secret-for-the-partner" not in stored_column(partner)
    assert "a-new-secret" not in staff_client.get(change_url(partner)).content.decode()


def test_the_admin_asks_for_a_new_secret_when_the_stored_one_cannot_be_decrypted(
    client, django_user_model, default_list
):
    partner = subscriber("Receiving Platform", default_list, "https://hooks.example.org/tid")
    stored = stored_column(partner)

    with old_key_lost:
        client.force_login(
            django_user_model.objects.create_superuser(username="root", password="pw")
        )
        page = client.get(change_url(partner))
        assert page.status_code == 200
        text = html.unescape(page.content.decode())
        assert "cannot be decrypted (the server's key changed)" in text and stored not in text
        assert client.get(reverse("admin:partners_partner_changelist")).status_code == 200

        save_in_admin(client, partner, webhook_secret="")  # other changes save; the value stays
        assert stored_column(partner) == stored

        save_in_admin(client, partner, webhook_secret="set-again-after-the-key-was-lost")
        assert fresh(partner).webhook_secret == "set-again-after-the-key-was-lost"
        assert "cannot be decrypted" not in client.get(change_url(partner)).content.decode()


# ------------------------------------------------------------------------------------------------
# The migration
# ------------------------------------------------------------------------------------------------

BEFORE = ("partners", "0005_verbose_names")
AFTER = ("partners", "0006_webhook_secret_encrypted")


def migrate_partners(target: tuple[str, str]):  # noqa: ANN201 - a historical apps registry
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    executor.loader.build_graph()
    return executor.loader.project_state([target]).apps


@pytest.fixture
def migrations_undone() -> Iterator[None]:
    """Partners' migrations back before encryption; the latest state again afterwards."""
    migrate_partners(BEFORE)
    try:
        yield
    finally:
        migrate_partners(AFTER)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("migrations_undone")
def test_the_migration_encrypts_plaintext_secrets_and_decrypts_them_when_reversed():
    old_partner = migrate_partners(BEFORE).get_model("partners", "Partner")
    with_secret = old_partner.objects.create(name="Plain", slug="plain", webhook_secret=SECRET)
    without = old_partner.objects.create(name="None", slug="none", webhook_secret="")

    migrate_partners(AFTER)

    assert stored_column(with_secret).startswith(crypto.PREFIX)
    assert SECRET not in stored_column(with_secret)
    assert Partner.objects.get(pk=with_secret.pk).webhook_secret == SECRET
    assert stored_column(without) == ""

    migrate_partners(BEFORE)

    assert stored_column(with_secret) == SECRET and stored_column(without) == ""


@pytest.mark.django_db(transaction=True)
def test_reversing_the_migration_stops_at_a_secret_that_cannot_be_decrypted():
    partner = Partner.objects.create(name="Lost", slug="lost", webhook_secret=SECRET)
    stored = stored_column(partner)

    with old_key_lost, pytest.raises(crypto.SecretUnreadable, match="'Lost'"):
        migrate_partners(BEFORE)

    assert stored_column(partner) == stored  # nothing undone: the migration is one transaction
    assert Partner.objects.get(pk=partner.pk).webhook_secret == SECRET
