"""The owner of the partitioned layout of L3 (``MEMORY_PARTITION_BY_EXPIRY=monthly``).

Once ``manage_memory partition`` converted it, the entries table is range-partitioned on
``expires_at``: one partition per calendar month (UTC), and a DEFAULT one for whatever no month
holds. PostgreSQL wants the partition key in every unique index, so on that table:

- the primary key is ``(id, expires_at)``, and ``(product_id, kind)`` has a plain index per
  partition; its uniqueness is kept by a key table (:data:`KEYS`, a plain table whose primary key
  is ``(product_id, kind)``, holding the id of the entry that owns each key), written by a row
  trigger (:data:`KEY_TRIGGER`) that refuses (SQLSTATE 23505, as the unique index would) a key
  another existing entry owns. The key table's own unique index does the waiting between two
  transactions inserting one key, and its rows are the locks (row locks live in the rows: unlike
  advisory locks they never fill PostgreSQL's lock table, whatever an import holds).
  ``DatabaseTier``'s writes update the row that exists or insert it (``ON CONFLICT (product_id,
  kind)`` needs a unique index, which cannot exist there): a save that loses a race to insert is
  refused by the trigger and tried again; an import first claims and locks its keys' rows;
- a change of ``expires_at`` moves the row to its month's partition (PostgreSQL's own row
  movement: the trigger on the destination sees the row's own id);
- the versions cascade is a statement trigger after DELETE (:data:`CASCADE_TRIGGER`; a foreign key
  needs a unique index on ``id`` alone), which drops the keys' rows too. A moved row is an
  UPDATE, so its versions and key stay;
- the purge detaches and drops whole expired months (:func:`detach_expired`, :func:`drain_detached`,
  :func:`drop_detached`), and creates the months ahead (:func:`create_ahead`).

The setting chooses the statements ``DatabaseTier`` sends (:func:`enabled`, no catalog query per
save): they work on a plain table too (an import claims keys only where the key table exists), so
the app keeps working between setting the variable and converting.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
from typing import Callable, Iterator

from django.conf import settings
from django.core import checks
from django.db import DatabaseError, OperationalError, connections, transaction
from django.utils import timezone

from memory.infra import replicas
from memory.infra.postgresql import base as postgresql
from memory.models import KEY_CONSTRAINT, VERSION_CASCADE_CONSTRAINT, ContentVersion, ProductMemoryEntry, \
    install_version_cascade

logger = logging.getLogger("memory")

MONTHLY = "monthly"
ENTRIES = ProductMemoryEntry._meta.db_table
VERSIONS = ContentVersion._meta.db_table
PARTITION_PREFIX = f"{ENTRIES}_p"  # + YYYY_MM
DEFAULT_PARTITION = f"{ENTRIES}_default"
DETACHED_PREFIX = f"{ENTRIES}_expired_"  # a detached month waiting to be dropped (+ YYYY_MM)
KEY_INDEX = "memory_entry_product_kind_idx"  # the per-partition (product_id, kind) index
KEY_TRIGGER = "memory_entry_key_unique"
CASCADE_TRIGGER = "memory_entry_versions_cascade"
KEYS = "memory_entry_key"  # one row per (product_id, kind): the entry owning it
# How long the purge waits for the table lock of a DETACH before leaving the month for its next run.
DETACH_LOCK_TIMEOUT = "2s"


class PartitionError(Exception):
    """A conversion that cannot be done; the message is for the operator (pt-BR)."""


def enabled() -> bool:
    """``MEMORY_PARTITION_BY_EXPIRY=monthly``: the writes that hold on a partitioned table."""
    return settings.MEMORY_PARTITION_BY_EXPIRY == MONTHLY


def claim_staged_keys_sql(staging: str) -> list[str]:
    """The statements claiming, then locking, the keys of the rows of table ``staging`` before a
    bulk write (one order: no deadlock between two imports): a key nobody owns gets a row owned by
    no entry yet, which the trigger gives to the entry inserted for it."""
    return [
        f"INSERT INTO {KEYS} (product_id, kind) SELECT product_id, kind FROM {staging}"
        f" ORDER BY product_id, kind ON CONFLICT DO NOTHING",
        f"SELECT 1 FROM {KEYS} AS k JOIN {staging} AS s ON k.product_id = s.product_id AND k.kind = s.kind"
        f" ORDER BY k.product_id, k.kind FOR UPDATE OF k",
    ]


def has_key_table(cursor) -> bool:
    """The key table exists: the entries table is partitioned (one catalog lookup)."""
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [KEYS])
    return bool(cursor.fetchone()[0])


def _db(using: str = replicas.PRIMARY):
    return connections[using]


def is_partitioned(using: str = replicas.PRIMARY) -> bool:
    """The entries table is a partitioned one (``relkind = 'p'``); False off PostgreSQL."""
    db = _db(using)
    if db.vendor != "postgresql":
        return False
    with db.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [ENTRIES])
        row = cursor.fetchone()
    return row is not None and row[0] == "p"


# --- what the statistics read: a partitioned table has no storage of its own --------------------


def total_bytes(cursor, table: str) -> int:
    """On-disk size of ``table`` and its indexes: of its partitions' when it is partitioned."""
    cursor.execute(
        "SELECT COALESCE((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree(%s::regclass)"
        " WHERE isleaf), pg_total_relation_size(%s::regclass))::bigint", [table, table])
    return int(cursor.fetchone()[0])


def estimated_rows(cursor, table: str) -> int:
    """The planner's row count of ``table`` (``pg_class.reltuples``, -1 before any ANALYZE): the sum of
    its partitions' when it is partitioned (autovacuum never analyzes a partitioned table itself)."""
    cursor.execute(
        "SELECT COALESCE((SELECT sum(GREATEST(c.reltuples, 0)) FROM pg_partition_tree(%s::regclass) AS t"
        " JOIN pg_class AS c ON c.oid = t.relid WHERE t.isleaf),"
        " (SELECT reltuples FROM pg_class WHERE oid = %s::regclass))::bigint", [table, table])
    return int(cursor.fetchone()[0])


# --- months ----------------------------------------------------------------------------------


def month_start(when: datetime) -> datetime:
    when = when.astimezone(dt_timezone.utc)
    return datetime(when.year, when.month, 1, tzinfo=dt_timezone.utc)


def next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def partition_name(start: datetime) -> str:
    return f"{PARTITION_PREFIX}{start:%Y_%m}"


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime | None  # None: the DEFAULT partition
    end: datetime | None


_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


def _parse_instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace(" ", "T"))
    return value if value.tzinfo else value.replace(tzinfo=dt_timezone.utc)


def partitions(cursor) -> list[Partition]:
    """The partitions attached to the entries table, by their range (the DEFAULT one last)."""
    cursor.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)", [ENTRIES])
    found = []
    for name, bound in cursor.fetchall():
        match = _BOUND.search(bound or "")
        if match is None:
            found.append(Partition(name, None, None))
        else:
            found.append(Partition(name, _parse_instant(match.group(1)), _parse_instant(match.group(2))))
    far = datetime.max.replace(tzinfo=dt_timezone.utc)
    return sorted(found, key=lambda p: (p.start is None, p.start or far))


def _quote(name: str) -> str:
    return connections[replicas.PRIMARY].ops.quote_name(name)


def _columns(cursor, table: str) -> list[str]:
    """The columns a row copy writes (the generated ``title`` aside), in table order."""
    cursor.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0"
        " AND NOT attisdropped AND attgenerated = '' ORDER BY attnum", [table])
    return [name for (name,) in cursor.fetchall()]


def _create_month(cursor, table: str, start: datetime) -> str:
    name = partition_name(start)
    cursor.execute(
        f"CREATE TABLE {_quote(name)} PARTITION OF {_quote(table)} FOR VALUES FROM (%s) TO (%s)",
        [start.isoformat(), next_month(start).isoformat()])
    return name


def create_ahead(now: datetime | None = None, months: int | None = None) -> list[str]:
    """The partitions of the current month and the next ``months`` (``MEMORY_PARTITIONS_AHEAD``)
    that were missing, created; the rows the DEFAULT partition held for them move in with them.
    Returns the names created. One short transaction per month."""
    now = now or timezone.now()
    months = settings.MEMORY_PARTITIONS_AHEAD if months is None else months
    created = []
    start = month_start(now)
    for _ in range(months + 1):
        with transaction.atomic(using=replicas.PRIMARY), _db().cursor() as cursor:
            existing = {p.name for p in partitions(cursor)}
            if partition_name(start) not in existing:
                created.append(_create_month_from_default(cursor, start, DEFAULT_PARTITION in existing))
        start = next_month(start)
    if created:
        logger.info("Partições criadas: %s", ", ".join(created))
    return created


def _create_month_from_default(cursor, start: datetime, has_default: bool) -> str:
    """Create the month ``start``; rows of its range waiting in the DEFAULT partition (where they
    went while it did not exist) move into it: PostgreSQL refuses the partition otherwise.
    A DELETE on the DEFAULT partition itself fires no trigger of the partitioned table: their
    versions stay, and the rows come back with their ids."""
    end = next_month(start)
    if not has_default:
        return _create_month(cursor, ENTRIES, start)
    columns = ", ".join(_quote(c) for c in _columns(cursor, ENTRIES))
    cursor.execute(f"LOCK TABLE {_quote(DEFAULT_PARTITION)} IN EXCLUSIVE MODE")
    cursor.execute(
        f"CREATE TEMPORARY TABLE memory_moving ON COMMIT DROP AS WITH moved AS ("
        f"DELETE FROM {_quote(DEFAULT_PARTITION)} WHERE expires_at >= %s AND expires_at < %s RETURNING {columns})"
        f" SELECT * FROM moved", [start, end])
    name = _create_month(cursor, ENTRIES, start)
    cursor.execute(f"INSERT INTO {_quote(ENTRIES)} ({columns}) SELECT {columns} FROM memory_moving")
    if cursor.rowcount:
        logger.info("Partição %s: %d entradas trazidas da partição padrão", name, cursor.rowcount)
    cursor.execute("DROP TABLE memory_moving")
    return name


# --- the purge's part: whole expired months --------------------------------------------------


def detach_expired(now: datetime | None = None) -> list[str]:
    """Detach the months whose whole range has expired (upper bound <= ``now``) and hold no
    approved entry (an approved one is never purged: such a month is left to the row purge),
    renamed ``…_expired_YYYY_MM``; returns every detached month waiting to be dropped (those an
    interrupted purge left too). Each DETACH is one short statement; it waits at most
    ``DETACH_LOCK_TIMEOUT`` for its lock, or the month waits for the next purge."""
    now = now or timezone.now()
    with _db().cursor() as cursor:
        months = [p for p in partitions(cursor) if p.end is not None and p.end <= now]
    for month in months:
        detached = DETACHED_PREFIX + month.name.removeprefix(PARTITION_PREFIX)
        try:
            with transaction.atomic(using=replicas.PRIMARY), _db().cursor() as cursor:
                cursor.execute(f"SELECT 1 FROM {_quote(month.name)} WHERE approved LIMIT 1")
                if cursor.fetchone() is not None:
                    continue
                cursor.execute(f"SET LOCAL lock_timeout = '{DETACH_LOCK_TIMEOUT}'")
                cursor.execute(f"ALTER TABLE {_quote(ENTRIES)} DETACH PARTITION {_quote(month.name)}")
                cursor.execute(f"ALTER TABLE {_quote(month.name)} RENAME TO {_quote(detached)}")
        except OperationalError as exc:  # a lock not granted in time: the next purge tries again
            if getattr(exc.__cause__, "sqlstate", None) != "55P03":
                raise
            logger.warning("Partição %s não desanexada agora (tabela ocupada); fica para a próxima limpeza",
                           month.name)
    return detached_tables()


def drain_detached(table: str, batch_size: Callable[[], int]) -> Iterator[list[tuple[int, str, str]]]:
    """The rows of a detached month, ``batch_size()`` at a time (asked before each batch) by id (its
    primary key's index), each batch's versions and keys deleted (two short statements) before it is
    yielded: the caller evicts their cached copies. The month is no longer part of the entries table,
    so no writer changes it."""
    last_id = 0
    while True:
        with transaction.atomic(using=replicas.PRIMARY), _db().cursor() as cursor:
            cursor.execute(f"SELECT id, product_id, kind FROM {_quote(table)} WHERE id > %s ORDER BY id LIMIT %s",
                           [last_id, batch_size()])
            rows = cursor.fetchall()
            if not rows:
                return
            ids = [r[0] for r in rows]
            cursor.execute(f"DELETE FROM {_quote(VERSIONS)} WHERE entry_id = ANY(%s)", [ids])
            # a key a new entry took over since (its owner detached) stays with it
            cursor.execute(f"DELETE FROM {KEYS} AS k USING unnest(%s::text[], %s::text[], %s::bigint[]) AS d(p, t, i)"
                           f" WHERE k.product_id = d.p AND k.kind = d.t AND k.entry_id = d.i",
                           [[r[1] for r in rows], [r[2] for r in rows], ids])
        last_id = rows[-1][0]
        yield rows


def drop_detached(table: str) -> None:
    """Drop a detached month (its rows already drained): one statement, whatever its size."""
    with _db().cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {_quote(table)}")
    logger.info("Partição expirada %s removida", table)


# --- detached months ----------------------------------------------------------------------------


def detached_tables() -> list[str]:
    """The detached months not dropped yet, oldest first."""
    with _db().cursor() as cursor:
        cursor.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE %s"
                       " AND relnamespace = current_schema()::regnamespace ORDER BY relname",
                       [DETACHED_PREFIX.replace("_", r"\_") + "%"])
        return [name for (name,) in cursor.fetchall()]


# --- conversion --------------------------------------------------------------------------------

_INDEX_DEF = re.compile(r"^CREATE (UNIQUE )?INDEX (\S+) ON (?:ONLY )?(\S+) (USING .*)$")

KEYS_TABLE_SQL = (f"CREATE TABLE {KEYS} (product_id varchar(255) NOT NULL, kind varchar(64) NOT NULL,"
                  f" entry_id bigint, PRIMARY KEY (product_id, kind))")

# The key of NEW must be its own or nobody's: an entry moving to another partition owns it already
# (read without a lock: a concurrent claim would see the entry and be refused); otherwise the
# key's row is inserted or, when it exists, locked (waiting for its writer) and read with a new
# snapshot, so an owner committed meanwhile is seen. A key whose owner is gone (a detached month,
# a truncation) or that nobody owns yet (an import's claim) is taken over.
KEY_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {KEY_TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    owner bigint;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.product_id = OLD.product_id AND NEW.kind = OLD.kind THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' AND EXISTS (SELECT 1 FROM {KEYS} WHERE product_id = NEW.product_id AND kind = NEW.kind
                                    AND entry_id = NEW.id) THEN
        RETURN NEW;
    END IF;
    FOR attempt IN 1..5 LOOP
        INSERT INTO {KEYS} (product_id, kind, entry_id) VALUES (NEW.product_id, NEW.kind, NEW.id)
            ON CONFLICT DO NOTHING;
        EXIT WHEN FOUND;
        SELECT entry_id INTO owner FROM {KEYS} WHERE product_id = NEW.product_id AND kind = NEW.kind FOR UPDATE;
        IF FOUND THEN
            IF owner IS DISTINCT FROM NEW.id THEN
                IF owner IS NOT NULL AND EXISTS (SELECT 1 FROM {ENTRIES} WHERE id = owner) THEN
                    RAISE unique_violation USING
                        MESSAGE = 'duplicate key value violates unique constraint "{KEY_CONSTRAINT}"',
                        DETAIL = format('Key (product_id, kind)=(%s, %s) already exists.', NEW.product_id, NEW.kind),
                        CONSTRAINT = '{KEY_CONSTRAINT}', TABLE = '{ENTRIES}';
                END IF;
                UPDATE {KEYS} SET entry_id = NEW.id WHERE product_id = NEW.product_id AND kind = NEW.kind;
            END IF;
            EXIT;
        END IF;
        IF attempt = 5 THEN
            RAISE serialization_failure USING MESSAGE = 'key of ' || NEW.product_id || ' changing too fast';
        END IF;
    END LOOP;
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM {KEYS} WHERE product_id = OLD.product_id AND kind = OLD.kind AND entry_id = OLD.id;
    END IF;
    RETURN NEW;
END $$
"""

# A statement trigger: PostgreSQL runs a row movement as a delete and an insert, and fires row-level
# AFTER DELETE triggers for it; an UPDATE statement fires no DELETE statement trigger.
CASCADE_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {CASCADE_TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {VERSIONS} AS v USING gone WHERE v.entry_id = gone.id;
    DELETE FROM {KEYS} AS k USING gone
        WHERE k.product_id = gone.product_id AND k.kind = gone.kind AND k.entry_id = gone.id;
    RETURN NULL;
END $$
"""


@dataclass
class ConversionResult:
    rows: int = 0
    partitions: int = 0
    seconds: float = 0.0


def _check_convertible(using: str) -> None:
    if _db(using).vendor != "postgresql":
        raise PartitionError("Partições por expiração exigem PostgreSQL; este banco é "
                             f"{_db(using).vendor}.")


def _indexes(cursor, table: str) -> list[tuple[str, str]]:
    """``(name, definition)`` of the table's indexes that no constraint owns (the primary key and
    the key's unique constraint are made by the conversion itself), and not the key's own index."""
    cursor.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = to_regclass(%s)"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)"
        " ORDER BY c.relname", [table])
    return [(name, definition) for name, definition in cursor.fetchall() if name != KEY_INDEX]


def _rebuild(cursor, *, partitioned: bool, progress: Callable[[str], None], now: datetime) -> ConversionResult:
    """Build the entries table again, partitioned or plain, with its rows, indexes, constraints,
    identity and versions cascade, and put it in place of the old one. Runs in the caller's
    transaction, which holds the old table in EXCLUSIVE mode: reads go on, writes wait."""
    result = ConversionResult()
    table, new = ENTRIES, f"{ENTRIES}_new"
    q = _quote
    cursor.execute(f"LOCK TABLE {q(table)} IN EXCLUSIVE MODE")
    columns = ", ".join(q(c) for c in _columns(cursor, table))
    indexes = _indexes(cursor, table)
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
    (old_sequence,) = cursor.fetchone()
    cursor.execute(f"SELECT last_value, is_called FROM {old_sequence}")
    last_value, is_called = cursor.fetchone()
    like = (f"(LIKE {q(table)} INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING IDENTITY INCLUDING CONSTRAINTS"
            f" INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING COMMENTS)")
    if partitioned:
        cursor.execute(f"CREATE TABLE {q(new)} {like} PARTITION BY RANGE (expires_at)")
        cursor.execute(f"ALTER TABLE {q(new)} ADD CONSTRAINT {q(new + '_pkey')} PRIMARY KEY (id, expires_at)")
        # a month for every month that holds rows, up to the months ahead; the rest in DEFAULT
        horizon = month_start(now)
        for _ in range(settings.MEMORY_PARTITIONS_AHEAD):
            horizon = next_month(horizon)
        horizon = next_month(horizon)
        cursor.execute(f"SELECT DISTINCT date_trunc('month', expires_at AT TIME ZONE 'UTC') FROM {q(table)}"
                       f" WHERE expires_at < %s", [horizon])
        months = {m.replace(tzinfo=dt_timezone.utc) for (m,) in cursor.fetchall()}
        start = month_start(now)
        while start < horizon:
            months.add(start)
            start = next_month(start)
        for start in sorted(months):
            cursor.execute(
                f"CREATE TABLE {q(partition_name(start))} PARTITION OF {q(new)} FOR VALUES FROM (%s) TO (%s)",
                [start.isoformat(), next_month(start).isoformat()])
            cursor.execute(f"INSERT INTO {q(new)} ({columns}) SELECT {columns} FROM {q(table)}"
                           f" WHERE expires_at >= %s AND expires_at < %s", [start, next_month(start)])
            result.rows += cursor.rowcount
            progress(f"{partition_name(start)}: {cursor.rowcount} entradas")
        cursor.execute(f"CREATE TABLE {q(DEFAULT_PARTITION)} PARTITION OF {q(new)} DEFAULT")
        ranges = " OR ".join(["(expires_at >= %s AND expires_at < %s)"] * len(months))
        cursor.execute(f"INSERT INTO {q(new)} ({columns}) SELECT {columns} FROM {q(table)} WHERE NOT ({ranges})",
                       [bound for start in sorted(months) for bound in (start, next_month(start))])
        result.rows += cursor.rowcount
        progress(f"{DEFAULT_PARTITION}: {cursor.rowcount} entradas")
        result.partitions = len(months) + 1
        cursor.execute(f"CREATE INDEX {q(KEY_INDEX + '_new')} ON {q(new)} (product_id, kind)")
    else:
        cursor.execute(f"CREATE TABLE {q(new)} {like}")
        for month in partitions(cursor):
            cursor.execute(f"INSERT INTO {q(new)} ({columns}) SELECT {columns} FROM {q(month.name)}")
            result.rows += cursor.rowcount
            progress(f"{month.name}: {cursor.rowcount} entradas")
        cursor.execute(f"ALTER TABLE {q(new)} ADD CONSTRAINT {q(new + '_pkey')} PRIMARY KEY (id)")
        cursor.execute(f"ALTER TABLE {q(new)} ADD CONSTRAINT {q(KEY_CONSTRAINT + '_new')} UNIQUE (product_id, kind)")
    renames = []
    for name, definition in indexes:
        match = _INDEX_DEF.match(definition)
        if match is None:
            raise PartitionError(f"Índice {name} com definição inesperada: {definition}")
        temporary = f"{name[:55]}_new"
        cursor.execute(f"CREATE {match.group(1) or ''}INDEX {q(temporary)} ON {q(new)} {match.group(4)}")
        renames.append((temporary, name))
    # the swap
    cursor.execute(f"ALTER TABLE {q(VERSIONS)} DROP CONSTRAINT IF EXISTS {q(VERSION_CASCADE_CONSTRAINT)}")
    cursor.execute(f"DROP TABLE {q(table)} CASCADE")
    cursor.execute(f"DROP TABLE IF EXISTS {KEYS}")
    cursor.execute(f"DROP FUNCTION IF EXISTS {KEY_TRIGGER}() CASCADE")
    cursor.execute(f"DROP FUNCTION IF EXISTS {CASCADE_TRIGGER}() CASCADE")
    cursor.execute(f"ALTER TABLE {q(new)} RENAME TO {q(table)}")
    cursor.execute(f"ALTER TABLE {q(table)} RENAME CONSTRAINT {q(new + '_pkey')} TO {q(table + '_pkey')}")
    if partitioned:
        renames.append((KEY_INDEX + "_new", KEY_INDEX))
    else:
        cursor.execute(f"ALTER TABLE {q(table)} RENAME CONSTRAINT {q(KEY_CONSTRAINT + '_new')} TO {q(KEY_CONSTRAINT)}")
    for temporary, name in renames:
        cursor.execute(f"ALTER INDEX {q(temporary)} RENAME TO {q(name)}")
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
    (sequence,) = cursor.fetchone()
    cursor.execute(f"ALTER SEQUENCE {sequence} RENAME TO {q(table + '_id_seq')}")
    cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, %s)", [table, last_value, is_called])
    if partitioned:
        cursor.execute(KEYS_TABLE_SQL)
        cursor.execute(f"INSERT INTO {KEYS} (product_id, kind, entry_id) SELECT product_id, kind, id FROM {q(table)}")
        cursor.execute(KEY_FUNCTION_SQL)
        cursor.execute(f"CREATE TRIGGER {KEY_TRIGGER} BEFORE INSERT OR UPDATE OF product_id, kind ON {q(table)}"
                       f" FOR EACH ROW EXECUTE FUNCTION {KEY_TRIGGER}()")
        cursor.execute(CASCADE_FUNCTION_SQL)
        cursor.execute(f"CREATE TRIGGER {CASCADE_TRIGGER} AFTER DELETE ON {q(table)} REFERENCING OLD TABLE AS gone"
                       f" FOR EACH STATEMENT EXECUTE FUNCTION {CASCADE_TRIGGER}()")
    cursor.execute(f"ANALYZE {q(table)}")
    if partitioned:
        cursor.execute(f"ANALYZE {KEYS}")
    return result


def convert(*, using: str = replicas.PRIMARY, progress: Callable[[str], None] = lambda line: None,
            now: datetime | None = None) -> ConversionResult:
    """Turn the plain entries table into the partitioned one (see the module docstring), in one
    transaction; ``PartitionError`` off PostgreSQL, with the setting off, or when it already is."""
    _check_convertible(using)
    if not enabled():
        raise PartitionError("MEMORY_PARTITION_BY_EXPIRY não é monthly: defina MEMORY_PARTITION_BY_EXPIRY=monthly "
                             "(em todos os processos) antes de particionar.")
    started = time.perf_counter()
    with transaction.atomic(using=using), postgresql.unbounded(_db(using)), _db(using).cursor() as cursor:
        if is_partitioned(using):
            raise PartitionError(f"A tabela {ENTRIES} já está particionada por expiração; nada a fazer.")
        result = _rebuild(cursor, partitioned=True, progress=progress, now=now or timezone.now())
    result.seconds = round(time.perf_counter() - started, 3)
    logger.info("Tabela %s particionada por expiração: %d entradas em %d partições (%.1f s)",
                ENTRIES, result.rows, result.partitions, result.seconds)
    return result


def undo(*, using: str = replicas.PRIMARY, progress: Callable[[str], None] = lambda line: None) -> ConversionResult:
    """Turn the partitioned entries table back into the plain one of the migrations (its unique
    ``(product_id, kind)`` constraint and versions foreign key again), in one transaction."""
    _check_convertible(using)
    started = time.perf_counter()
    with transaction.atomic(using=using), postgresql.unbounded(_db(using)), _db(using).cursor() as cursor:
        if not is_partitioned(using):
            raise PartitionError(f"A tabela {ENTRIES} não está particionada; nada a desfazer.")
        for table in detached_tables():
            raise PartitionError(f"A partição expirada {table} ainda não foi removida: execute manage_memory purge "
                                 "antes de desfazer.")
        result = _rebuild(cursor, partitioned=False, progress=progress, now=timezone.now())
        install_version_cascade(_db(using))
    result.seconds = round(time.perf_counter() - started, 3)
    logger.info("Tabela %s sem partições de novo: %d entradas (%.1f s)", ENTRIES, result.rows, result.seconds)
    return result


def check_layout(app_configs=None, databases=None, **kwargs) -> list[checks.CheckMessage]:
    """System check (``check --database default``, ``migrate``): the setting and the table agree.
    Set but not converted: a warning (the app works, the purge goes row by row); converted but
    not set: an error (the plain writes need the unique index the table no longer has)."""
    if not databases or replicas.PRIMARY not in databases:
        return []
    db = _db()
    if db.vendor != "postgresql":
        if enabled():
            return [checks.Warning("MEMORY_PARTITION_BY_EXPIRY=monthly só vale no PostgreSQL; ignorado neste banco.",
                                   id="memory.W030")]
        return []
    try:
        partitioned = is_partitioned()
    except DatabaseError:
        return []  # no database yet: migrate and health say so
    if enabled() and not partitioned:
        return [checks.Warning(
            f"MEMORY_PARTITION_BY_EXPIRY=monthly, mas a tabela {ENTRIES} não está particionada.",
            hint="Execute: python manage.py manage_memory partition", id="memory.W031")]
    if partitioned and not enabled():
        return [checks.Error(
            f"A tabela {ENTRIES} está particionada por expiração, mas MEMORY_PARTITION_BY_EXPIRY não é monthly: "
            "as gravações falhariam.",
            hint="Defina MEMORY_PARTITION_BY_EXPIRY=monthly ou execute manage_memory partition --undo.",
            id="memory.E031")]
    return []
