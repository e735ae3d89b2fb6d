"""The memory's scheduled jobs as django-celery-beat rows, registered on every ``migrate``.

Beat reads ``PeriodicTask`` rows, and a person sees and edits them in the admin
(Periodic tasks). :func:`register_periodic_tasks` runs after each ``migrate``
(a ``post_migrate`` handler connected in ``MemoryConfig.ready()``) and keeps
exactly one row per job, found by its name. Who owns what:

- the interval belongs to settings (``MEMORY_*_INTERVAL``, from the
  environment): each migrate writes it into a row that runs on an interval,
  so changing the variable and deploying changes the cadence;
- a row a person switched to a crontab, solar or clocked schedule keeps it
  (settings hold only intervals, and such a choice is deliberate);
- ``enabled`` and everything else a person edits (kwargs, queue, priority,
  description) are set only when the row is created: a job paused in the
  admin stays paused across deploys;
- a row renamed in the admin is left alone and no second one is made, as
  long as it still runs the job's task.

Each row expires its message after one interval, so a worker that was down
does not find a queue of stale flushes and purges when it comes back.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, router, transaction

from memory.engine.validators import whole_number
from memory.management.terminal import memory_log_level
from memory.periodic_tasks import BACKUP_TASK, BATCH_TASK, FLUSH_TASK, PURGE_TASK, REFRESH_AHEAD_TASK, ROLLUP_TASK

logger = logging.getLogger("memory")

CREATED, UPDATED, UNCHANGED, KEPT = "created", "updated", "unchanged", "kept"


@dataclass(frozen=True)
class Job:
    name: str  # PeriodicTask.name: the row's identity
    task: str
    interval_setting: str
    description: str


JOBS = (
    Job(
        "memória: limpar entradas expiradas",
        PURGE_TASK,
        "MEMORY_PURGE_INTERVAL",
        "Remove as entradas expiradas em lotes de MEMORY_PURGE_BATCH_SIZE e as cópias no Redis e no L1.",
    ),
    Job(
        "memória: descarregar contadores de acertos",
        FLUSH_TASK,
        "MEMORY_COUNTER_FLUSH_INTERVAL",
        "Grava nas entradas os acertos e tokens economizados contados no Redis.",
    ),
    Job(
        "memória: consolidar estatísticas diárias",
        ROLLUP_TASK,
        "MEMORY_ROLLUP_INTERVAL",
        "Grava na tabela de estatísticas diárias (o painel) acertos, faltas, gerações e tokens de cada dia.",
    ),
    Job(
        "memória: snapshot de backup",
        BACKUP_TASK,
        "MEMORY_BACKUP_INTERVAL",
        "Grava um snapshot JSONL compactado em MEMORY_BACKUP_DIR (como manage_memory backup) "
        "e mantém os MEMORY_BACKUP_KEEP mais recentes.",
    ),
    Job(
        "memória: importar resultados de lotes (Batch API)",
        BATCH_TASK,
        "MEMORY_BATCH_INGEST_INTERVAL",
        "Consulta os lotes da Batch API em aberto (generate_content --batch-api), grava na memória os "
        "resultados dos concluídos e envia os que uma falha deixou sem enviar.",
    ),
    Job(
        "memória: renovar antecipadamente as entradas populares",
        REFRESH_AHEAD_TASK,
        "MEMORY_REFRESH_AHEAD_INTERVAL",
        "Regenera, das mais populares para as menos, as entradas desatualizadas ou que expiram em "
        "MEMORY_REFRESH_AHEAD_SECONDS, até MEMORY_REFRESH_TOKEN_BUDGET tokens por execução; nunca as aprovadas.",
    ),
)

# Positive integers the jobs read from settings.
JOB_SETTINGS = tuple(job.interval_setting for job in JOBS) + ("MEMORY_PURGE_BATCH_SIZE", "MEMORY_BACKUP_KEEP")

SECONDS_PER = (("days", 86400), ("hours", 3600), ("minutes", 60))


def setting_errors() -> list[str]:
    """One message per job setting that is not a positive whole number."""
    errors = []
    for name in JOB_SETTINGS:
        try:
            whole_number(name, getattr(settings, name, None), minimum=1)
        except ValueError as exc:
            errors.append(str(exc))
    return errors


def check_job_settings(app_configs=None, **kwargs) -> list[Error]:
    """System check (``manage.py check``, ``migrate``, ``runserver``) for the job settings."""
    return [Error(message, id="memory.E001") for message in setting_errors()]


def interval_for(seconds: int) -> tuple[int, str]:
    """``(every, period)`` read the way a person would: 3600 s is every 1 hour."""
    for period, size in SECONDS_PER:
        if seconds % size == 0:
            return seconds // size, period
    return seconds, "seconds"


def _interval_schedule(seconds: int, using: str):
    from django_celery_beat.models import IntervalSchedule

    every, period = interval_for(seconds)
    # The admin can make duplicate schedules (no unique constraint): reuse the oldest.
    schedule = IntervalSchedule.objects.using(using).filter(every=every, period=period).order_by("id").first()
    return schedule or IntervalSchedule.objects.using(using).create(every=every, period=period)


def sync_job(job: Job, using: str = DEFAULT_DB_ALIAS) -> str:
    """Create or update one job's row (see the module docstring); returns what happened."""
    from django_celery_beat.models import PeriodicTask

    seconds = getattr(settings, job.interval_setting)
    tasks = PeriodicTask.objects.using(using)
    with transaction.atomic(using=using):
        row = tasks.select_for_update().filter(name=job.name).first()
        if row is None:
            if tasks.filter(task=job.task).exists():
                return KEPT  # renamed or made by a person: theirs
            schedule = _interval_schedule(seconds, using)
            _, created = tasks.get_or_create(
                name=job.name,
                defaults={
                    "task": job.task,
                    "interval": schedule,
                    "expire_seconds": seconds,
                    "enabled": True,
                    "description": job.description,
                },
            )
            return CREATED if created else UNCHANGED
        if row.interval_id is None:
            return KEPT  # a crontab, solar or clocked schedule chosen in the admin
        every, period = interval_for(seconds)
        expire_seconds = None if row.expires else seconds  # a person's fixed expiry date wins
        if (row.task, row.interval.every, row.interval.period, row.expire_seconds) == (
            job.task, every, period, expire_seconds,
        ):
            return UNCHANGED
        row.task = job.task
        row.interval = _interval_schedule(seconds, using)
        row.expire_seconds = expire_seconds
        row.save(update_fields=["task", "interval", "expire_seconds"])
        return UPDATED


def register_periodic_tasks(using: str = DEFAULT_DB_ALIAS) -> dict[str, str]:
    """Make the memory's jobs exist in django-celery-beat; ``{job name: what happened}``."""
    errors = setting_errors()
    if errors:
        raise ImproperlyConfigured("; ".join(errors))
    outcome = {job.name: sync_job(job, using) for job in JOBS}
    changed = {name: what for name, what in outcome.items() if what in (CREATED, UPDATED)}
    if changed:
        logger.info(
            "Tarefas agendadas da memória: %s",
            ", ".join(f"{name} ({what})" for name, what in changed.items()),
        )
    return outcome


def register_after_migrate(sender, app_config=None, verbosity=1, using=DEFAULT_DB_ALIAS, apps=None, **kwargs):
    """``post_migrate`` handler: register the jobs once django-celery-beat's tables exist."""
    try:
        periodic_task = (apps or _global_apps()).get_model("django_celery_beat", "PeriodicTask")
    except LookupError:
        return  # django-celery-beat not migrated (yet) on this database
    if not router.allow_migrate_model(using, periodic_task):
        return
    with memory_log_level(verbosity):  # it runs inside migrate, whose -v decides
        outcome = register_periodic_tasks(using=using)
    if verbosity >= 2:
        for name, what in outcome.items():
            print(f"  Tarefa agendada '{name}': {what}")


def _global_apps():
    from django.apps import apps

    return apps
