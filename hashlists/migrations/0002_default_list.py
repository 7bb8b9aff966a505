from django.db import migrations

DEFAULT_LIST = {
    "slug": "take-it-down",
    "name": "Take It Down",
    "description": (
        "Hashes of explicit images and videos of people under 18, reported by the people pictured "
        "or by a parent or trusted adult, reviewed by staff."
    ),
    "published": True,
}


def create_default_list(apps, schema_editor):
    HashList = apps.get_model("hashlists", "HashList")
    HashList.objects.get_or_create(slug=DEFAULT_LIST["slug"], defaults=DEFAULT_LIST)


class Migration(migrations.Migration):
    dependencies = [("hashlists", "0001_initial")]

    # Reversing leaves the list in place: entries and cases may point at it (PROTECT).
    operations = [migrations.RunPython(create_default_list, migrations.RunPython.noop)]
