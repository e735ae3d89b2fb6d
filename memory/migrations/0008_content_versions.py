"""Content that is never lost: every content an entry holds is a ``ContentVersion``; entries carry
their current version's number, origin and author, and an approval (who and when).

- New columns keep a database default, so adding them rewrites no table on PostgreSQL.
- Every existing entry gets its content as version 1 (origin ``generated``), in batches of
  ``BACKFILL_BATCH`` ids, each statement short whatever the table's size.
- The database deletes an entry's versions with it (:func:`memory.models.install_version_cascade`).
- Three permissions: edit the content, approve it, regenerate approved content.
"""
import django.utils.timezone
from django.db import migrations, models

from memory.models import VERSION_CASCADE_CONSTRAINT, VERSION_CASCADE_TRIGGER, install_version_cascade

ORIGINS = [("generated", "gerado"), ("edited", "editado"), ("imported", "importado"), ("restored", "restaurado")]
BACKFILL_BATCH = 10_000


def backfill_versions(apps, schema_editor):
    """Version 1 of every entry: its content as it is, written by its generator."""
    connection = schema_editor.connection
    entries = connection.ops.quote_name("memory_productmemoryentry")
    versions = connection.ops.quote_name("memory_contentversion")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MIN(id), MAX(id) FROM {entries}")
        low, high = cursor.fetchone()
        if low is None:
            return
        for start in range(low, high + 1, BACKFILL_BATCH):
            cursor.execute(
                f"INSERT INTO {versions} (entry_id, number, payload, origin, generator_version, tokens, author,"
                f" created_at) SELECT id, 1, payload, 'generated', generator_version,"
                f" tokens_prompt + tokens_completion, '', updated_at FROM {entries}"
                f" WHERE id >= %s AND id < %s",
                [start, start + BACKFILL_BATCH],
            )


def install_cascade(apps, schema_editor):
    install_version_cascade(schema_editor.connection)


def remove_cascade(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE memory_contentversion DROP CONSTRAINT IF EXISTS {VERSION_CASCADE_CONSTRAINT}")
        elif connection.vendor == "sqlite":
            cursor.execute(f"DROP TRIGGER IF EXISTS {VERSION_CASCADE_TRIGGER}")


class Migration(migrations.Migration):

    dependencies = [
        ("memory", "0007_entry_tokens_cached_reasoning"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="productmemoryentry",
            options={
                "permissions": [
                    ("clear_productmemoryentry", "Pode limpar toda a memória"),
                    ("edit_productmemoryentry", "Pode editar o conteúdo"),
                    ("approve_productmemoryentry", "Pode aprovar o conteúdo"),
                    ("override_approval_productmemoryentry", "Pode regenerar conteúdo aprovado"),
                ],
                "verbose_name": "entrada da memória",
                "verbose_name_plural": "entradas da memória",
            },
        ),
        migrations.AddField(
            model_name="productmemoryentry",
            name="version",
            field=models.PositiveIntegerField(db_default=1, default=1, verbose_name="versão"),
        ),
        migrations.AddField(
            model_name="productmemoryentry",
            name="origin",
            field=models.CharField(choices=ORIGINS, db_default="generated", default="generated", max_length=16,
                                   verbose_name="origem"),
        ),
        migrations.AddField(
            model_name="productmemoryentry",
            name="author",
            field=models.CharField(blank=True, db_default="", default="", max_length=150, verbose_name="autor"),
        ),
        migrations.AddField(
            model_name="productmemoryentry",
            name="approved",
            field=models.BooleanField(db_default=False, default=False, verbose_name="aprovado"),
        ),
        migrations.AddField(
            model_name="productmemoryentry",
            name="approved_by",
            field=models.CharField(blank=True, db_default="", default="", max_length=150, verbose_name="aprovado por"),
        ),
        migrations.AddField(
            model_name="productmemoryentry",
            name="approved_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="aprovado em"),
        ),
        migrations.CreateModel(
            name="ContentVersion",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("number", models.PositiveIntegerField(verbose_name="número")),
                ("payload", models.JSONField(verbose_name="conteúdo")),
                ("origin", models.CharField(choices=ORIGINS, max_length=16, verbose_name="origem")),
                ("generator_version", models.CharField(max_length=200, verbose_name="versão do gerador")),
                ("tokens", models.PositiveBigIntegerField(default=0, verbose_name="tokens")),
                ("author", models.CharField(blank=True, default="", max_length=150, verbose_name="autor")),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, verbose_name="criado em")),
                ("entry", models.ForeignKey(db_constraint=False, db_index=False,
                                            on_delete=models.deletion.DO_NOTHING, related_name="versions",
                                            to="memory.productmemoryentry", verbose_name="entrada")),
            ],
            options={
                "verbose_name": "versão do conteúdo",
                "verbose_name_plural": "versões do conteúdo",
                "ordering": ["entry", "-number"],
                "constraints": [
                    models.UniqueConstraint(fields=("entry", "number"), name="memory_version_entry_number_uniq"),
                ],
            },
        ),
        migrations.AddIndex(
            model_name="productmemoryentry",
            index=models.Index(condition=models.Q(("approved", True)), fields=["approved"],
                               name="memory_entry_approved_idx"),
        ),
        migrations.AddIndex(
            model_name="productmemoryentry",
            index=models.Index(condition=models.Q(("origin", "generated"), _negated=True), fields=["origin"],
                               name="memory_entry_origin_idx"),
        ),
        migrations.RunPython(backfill_versions, migrations.RunPython.noop, elidable=True),
        migrations.RunPython(install_cascade, remove_cascade),
    ]
