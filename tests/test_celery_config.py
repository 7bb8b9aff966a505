"""Celery is configured for at-least-once, idempotent work (DESIGN.md section 8)."""

from django.core.management import call_command

from tidportal.celery import app


def test_tasks_are_acknowledged_late_and_requeued_if_a_worker_dies():
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1


def test_only_json_crosses_the_broker_and_every_task_has_time_limits():
    conf = app.conf
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert 0 < conf.task_soft_time_limit < conf.task_time_limit
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit


def test_every_scheduled_task_exists():
    app.loader.import_default_modules()
    schedule = app.conf.beat_schedule
    assert "hashlists.tasks.list_changes_sequence" in {e["task"] for e in schedule.values()}
    for entry in schedule.values():
        assert entry["task"] in app.tasks, entry["task"]


def test_the_embedded_beat_runs_every_scheduled_task_once(db, default_list, capsys):
    from hashlists.models import HashEntry, ListChange

    entry = HashEntry.objects.create(
        hash_list=default_list, hash_type="md5", value="c" * 32, media_type="video"
    )
    change = ListChange.objects.create(hash_list=default_list, entry=entry, op="add")
    call_command("embedded_beat", "--once")
    change.refresh_from_db()
    assert change.seq == 1


def test_migrations_match_the_models(db):
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
