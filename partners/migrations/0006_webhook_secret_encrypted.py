"""Partners' webhook secrets encrypted at rest (tidportal/crypto.py).

The column becomes ``text`` (the ciphertext is longer than the 128 characters of a secret), then
every plaintext secret is encrypted under ``SECRET_KEY``. Until this release runs everywhere, the
previous one may still write a plaintext secret (a staff member saving a partner): it is read as
it is and encrypted by ``manage.py secrets_reencrypt``, or when the partner is next saved. And
until the workers run this release, the previous one signs with the ciphertext: partners refuse
those notifications, and the retries (from 30 s on) are made by the new workers.

Reversible: going back decrypts every secret into the column, then shortens it again; a secret
that cannot be decrypted stops that, rather than being dropped.
"""

from django.db import migrations
from django.db.models import TextField, Value

import tidportal.crypto


def encrypt_secrets(apps, schema_editor):
    # The historical field is already an EncryptedTextField: it reads plaintext as it is, and
    # encrypts whatever it writes.
    Partner = apps.get_model("partners", "Partner")
    rows = Partner.objects.exclude(webhook_secret="").values_list("pk", "webhook_secret")
    for pk, secret in rows.iterator():
        Partner.objects.filter(pk=pk).update(webhook_secret=secret)


def decrypt_secrets(apps, schema_editor):
    Partner = apps.get_model("partners", "Partner")
    rows = Partner.objects.exclude(webhook_secret="").values_list("pk", "name", "webhook_secret")
    for pk, name, secret in rows.iterator():
        if isinstance(secret, tidportal.crypto.UnreadableSecret):
            raise tidportal.crypto.SecretUnreadable(
                f"The webhook secret of partner {name!r} cannot be decrypted: put the key it was "
                "encrypted under in DJANGO_SECRET_KEY_FALLBACKS, or clear the secret, and migrate "
                "back again."
            )
        # A Value expression is written as given: the field would encrypt a plain string.
        Partner.objects.filter(pk=pk).update(webhook_secret=Value(secret, output_field=TextField()))


class Migration(migrations.Migration):
    dependencies = [
        ("partners", "0005_verbose_names"),
    ]

    operations = [
        migrations.AlterField(
            model_name="partner",
            name="webhook_secret",
            field=tidportal.crypto.EncryptedTextField(
                blank=True, max_length=128, verbose_name="webhook secret"
            ),
        ),
        migrations.RunPython(encrypt_secrets, decrypt_secrets),
    ]
