"""The scheduled jobs exist once in django-celery-beat after each migrate, follow settings,
and keep what a person set in the admin."""
import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from beecatalog.celery import app
from memory.schedules import JOBS, interval_for, register_after_migrate, register_periodic_tasks

pytestmark = pytest.mark.django_db

NAMES = [job.name for job in JOBS]
PURGE = JOBS[0]


def memory_tasks():
    return PeriodicTask.objects.filter(task__startswith="memory.").order_by("name")


def test_the_migrated_database_has_each_job_once_with_the_settings_interval(settings):
    rows = {row.name: row for row in memory_tasks()}
    assert sorted(rows) == sorted(NAMES)
    for job in JOBS:
        row = rows[job.name]
        seconds = getattr(settings, job.interval_setting)
        assert row.task == job.task
        assert row.enabled
        assert (row.interval.every, row.interval.period) == interval_for(seconds)
        assert row.expire_seconds == seconds


def test_migrating_twice_creates_no_duplicates():
    call_command("migrate", verbosity=0)
    call_command("migrate", verbosity=0)
    assert memory_tasks().count() == len(JOBS)
    assert sorted(memory_tasks().values_list("name", flat=True)) == sorted(NAMES)


def test_the_post_migrate_handler_twice_creates_no_duplicates():
    PeriodicTask.objects.filter(task__startswith="memory.").delete()
    intervals_before = IntervalSchedule.objects.count()
    for _ in range(2):
        register_after_migrate(sender=None, verbosity=0, using="default")
    assert memory_tasks().count() == len(JOBS)
    assert IntervalSchedule.objects.count() == intervals_before


def test_the_handler_waits_for_django_celery_beat_tables():
    """``migrate memory`` alone, before django-celery-beat's migrations: nothing to register into yet."""
    from django.apps.registry import Apps

    PeriodicTask.objects.filter(task__startswith="memory.").delete()
    register_after_migrate(sender=None, verbosity=0, using="default", apps=Apps(installed_apps=[]))
    assert not memory_tasks().exists()


def test_a_deleted_job_comes_back_on_the_next_migrate():
    PeriodicTask.objects.get(name=PURGE.name).delete()
    assert register_periodic_tasks()[PURGE.name] == "created"
    assert PeriodicTask.objects.filter(name=PURGE.name, task=PURGE.task).exists()


def test_a_changed_interval_setting_reaches_the_row():
    with override_settings(MEMORY_PURGE_INTERVAL=1800):
        outcome = register_periodic_tasks()
    assert outcome[PURGE.name] == "updated"
    row = PeriodicTask.objects.get(name=PURGE.name)
    assert (row.interval.every, row.interval.period, row.expire_seconds) == (30, "minutes", 1800)
    assert set(outcome.values()) == {"updated", "unchanged"}


def test_a_job_paused_in_the_admin_stays_paused_with_its_edits():
    row = PeriodicTask.objects.get(name=PURGE.name)
    row.enabled = False
    row.kwargs = '{"note": "manutenção"}'
    row.description = "pausado pela equipe"
    row.save()
    with override_settings(MEMORY_PURGE_INTERVAL=7200):
        register_periodic_tasks()
    row.refresh_from_db()
    assert row.enabled is False
    assert row.kwargs == '{"note": "manutenção"}'
    assert row.description == "pausado pela equipe"
    assert (row.interval.every, row.interval.period) == (2, "hours")


def test_a_crontab_chosen_in_the_admin_is_kept():
    row = PeriodicTask.objects.get(name=PURGE.name)
    row.interval = None
    row.crontab = CrontabSchedule.objects.create(minute="0", hour="3")
    row.save()
    with override_settings(MEMORY_PURGE_INTERVAL=60):
        assert register_periodic_tasks()[PURGE.name] == "kept"
    row.refresh_from_db()
    assert row.interval is None and row.crontab.hour == "3"


def test_a_job_renamed_in_the_admin_is_not_made_again():
    PeriodicTask.objects.filter(name=PURGE.name).update(name="limpeza (renomeada)")
    register_periodic_tasks()
    register_periodic_tasks()
    assert list(PeriodicTask.objects.filter(task=PURGE.task).values_list("name", flat=True)) == [
        "limpeza (renomeada)"
    ]


@pytest.mark.parametrize("name, value", [
    ("MEMORY_COUNTER_FLUSH_INTERVAL", 0),
    ("MEMORY_COUNTER_FLUSH_INTERVAL", -5),
    ("MEMORY_COUNTER_FLUSH_INTERVAL", "60"),
    ("MEMORY_COUNTER_FLUSH_INTERVAL", None),
    ("MEMORY_COUNTER_FLUSH_INTERVAL", True),
    ("MEMORY_BACKUP_INTERVAL", 0),
    ("MEMORY_PURGE_BATCH_SIZE", 0),
    ("MEMORY_BACKUP_KEEP", -1),
])
def test_a_bad_job_setting_is_refused_by_name_and_changes_nothing(name, value):
    before = list(memory_tasks().values_list("name", "interval_id", "expire_seconds"))
    with override_settings(**{name: value}):
        with pytest.raises(ImproperlyConfigured, match=name):
            register_periodic_tasks()
        with pytest.raises(SystemCheckError, match=name):
            call_command("check")
    assert list(memory_tasks().values_list("name", "interval_id", "expire_seconds")) == before


@pytest.mark.parametrize("seconds, expected", [
    (1, (1, "seconds")),
    (90, (90, "seconds")),
    (60, (1, "minutes")),
    (600, (10, "minutes")),
    (3600, (1, "hours")),
    (5400, (90, "minutes")),
    (86400, (1, "days")),
])
def test_intervals_read_the_way_a_person_would(seconds, expected):
    assert interval_for(seconds) == expected


def test_beat_schedules_every_job_and_the_worker_knows_its_task():
    scheduler = DatabaseScheduler(app=app, lazy=True)
    schedule = scheduler.all_as_schedule()
    for job in JOBS:
        assert schedule[job.name].task == job.task
        assert job.task in app.tasks


def test_the_jobs_are_listed_in_the_admin(client):
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw-admin-1")
    client.force_login(admin)
    page = client.get("/admin/django_celery_beat/periodictask/").content.decode()
    for name in NAMES:
        assert name in page
