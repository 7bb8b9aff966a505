"""The three staff roles (DESIGN.md section 7) as groups with their permissions.

Case reviewers work cases; supervisors also decide in bulk, override and remove entries; partner
managers run partners and their keys. Everyone sees matches and the feed. Later migrations may
add permissions to these groups; this one only ever adds.
"""

from django.db import migrations

VIEW_SHARED = [
    "hashlists.view_hashlist",
    "hashlists.view_hashentry",
    "hashlists.view_hashentrysource",
    "hashlists.view_listchange",
    "hashlists.view_snapshot",
    "partners.view_matchreport",
]

CASE_REVIEWER = [
    *VIEW_SHARED,
    "cases.view_case",
    "cases.change_case",
    "cases.review_case",
    "cases.view_mediaitem",
    "cases.view_casenote",
    "cases.add_casenote",
    "partners.view_partner",
]

SUPERVISOR = [
    *CASE_REVIEWER,
    "cases.bulk_accept_case",
    "cases.override_case",
    "hashlists.change_hashentry",
    "hashlists.change_hashlist",
    "partners.view_webhookdelivery",
]

PARTNER_MANAGER = [
    *VIEW_SHARED,
    "partners.view_partner",
    "partners.add_partner",
    "partners.change_partner",
    "partners.suspend_partner",
    "partners.view_apikey",
    "partners.add_apikey",
    "partners.change_apikey",
    "partners.revoke_apikey",
    "partners.view_webhookdelivery",
]

GROUPS = {
    "Case reviewer": CASE_REVIEWER,
    "Supervisor": SUPERVISOR,
    "Partner manager": PARTNER_MANAGER,
}


def create_groups(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations ran; make sure they exist now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for dotted in codenames:
            app_label, codename = dotted.split(".")
            permission = Permission.objects.get(content_type__app_label=app_label, codename=codename)
            group.permissions.add(permission)


def delete_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("cases", "0002_initial"),
        ("hashlists", "0002_default_list"),
        ("partners", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_groups, delete_groups)]
