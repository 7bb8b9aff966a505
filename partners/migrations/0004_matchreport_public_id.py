# A public id for match reports (partners never see sequential ids), the frame percentages of
# vPDQ matches, and the match thresholds as constraints. Existing rows get a random id each:
# the column is added nullable, filled, then made unique and required.

import uuid

from django.db import migrations, models


def fill_public_ids(apps, schema_editor):
    MatchReport = apps.get_model("partners", "MatchReport")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "UPDATE partners_matchreport SET public_id = gen_random_uuid() WHERE public_id IS NULL"
        )
        return
    rows = list(MatchReport.objects.filter(public_id__isnull=True).only("pk"))
    for row in rows:
        row.public_id = uuid.uuid4()
    MatchReport.objects.bulk_update(rows, ["public_id"], batch_size=1000)


class Migration(migrations.Migration):

    dependencies = [
        ('hashlists', '0004_listchange_entry_seq'),
        ('partners', '0003_webhookdelivery_superseded'),
    ]

    operations = [
        migrations.AddField(
            model_name='matchreport',
            name='public_id',
            field=models.UUIDField(editable=False, null=True, verbose_name='public id'),
        ),
        migrations.RunPython(fill_public_ids, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name='matchreport',
            name='public_id',
            field=models.UUIDField(default=uuid.uuid4, editable=False, help_text='Opaque, random id the reporting partner sees. Never sequential.', unique=True, verbose_name='public id'),
        ),
        migrations.AddField(
            model_name='matchreport',
            name='listed_match_percent',
            field=models.FloatField(blank=True, help_text="vPDQ only: share of the listed video's frames the partner's video matched.", null=True, verbose_name='listed frames matched (%)'),
        ),
        migrations.AddField(
            model_name='matchreport',
            name='query_match_percent',
            field=models.FloatField(blank=True, help_text="vPDQ only: share of the partner's video frames that matched the listed one.", null=True, verbose_name="partner's frames matched (%)"),
        ),
        migrations.AddConstraint(
            model_name='matchreport',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('distance__lte', 0), ('hash_type', 'md5')), models.Q(('distance__lte', 31), ('hash_type', 'pdq')), models.Q(('distance__lte', 8), ('hash_type', 'phash')), models.Q(('distance__lte', 31), ('hash_type', 'vpdq')), _connector='OR'), name='matchreport_distance_threshold'),
        ),
        migrations.AddConstraint(
            model_name='matchreport',
            constraint=models.CheckConstraint(condition=models.Q(('hash_type', 'vpdq'), models.Q(('listed_match_percent__isnull', True), ('query_match_percent__isnull', True)), _connector='OR'), name='matchreport_percent_only_vpdq'),
        ),
        migrations.AddConstraint(
            model_name='matchreport',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('listed_match_percent__isnull', True), models.Q(('listed_match_percent__gte', 0), ('listed_match_percent__lte', 100)), _connector='OR'), models.Q(('query_match_percent__isnull', True), models.Q(('query_match_percent__gte', 0), ('query_match_percent__lte', 100)), _connector='OR')), name='matchreport_percent_range'),
        ),
    ]
