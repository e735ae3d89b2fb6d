"""Migration 0007 on a database with entries: each gets its content as version 1, and the
database deletes an entry's versions with it (a trigger on SQLite, the demo's database)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import django
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", "memory", "0005", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO memory_productmemoryentry (product_id, kind, payload, source_data, input_fingerprint,"
            " generator_version, tokens_prompt, tokens_completion, hit_count, tokens_saved, created_at,"
            " updated_at, expires_at) VALUES ('OLD-1', 'main_content', '{\\"title\\": \\"Antigo\\"}', '{}', 'f',"
            " 'template:template:p0', 10, 5, 0, 0, '2026-01-01', '2026-01-02', '2030-01-01')")
    call_command("migrate", verbosity=0)
    from memory.models import ContentVersion, ProductMemoryEntry
    version = ContentVersion.objects.get()
    entry = ProductMemoryEntry.objects.get()
    print(version.number, version.origin, version.payload["title"], version.tokens, version.generator_version,
          entry.version, entry.origin, entry.approved)
    ProductMemoryEntry.objects.all().delete()
    print(ContentVersion.objects.count())
""")


@pytest.mark.slow
def test_existing_entries_get_their_content_as_version_one_and_deleting_them_deletes_it(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "beecatalog.settings", "DATABASE_URL": f"sqlite:///{tmp_path}/m.db",
           "REDIS_URL": "", "SECRET_KEY": "test-secret-key", "MEMORY_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["1 generated Antigo 15 template:template:p0 1 generated False", "0"]
