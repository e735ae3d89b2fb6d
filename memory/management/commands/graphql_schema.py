"""``python manage.py graphql_schema``: writes the GraphQL schema (SDL) to docs/schema.graphql, or
with ``--check`` says whether that file still matches the code (exit 1 when it drifted)."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from memory.api.graphql.schema import SCHEMA_FILE, printed_schema


class Command(BaseCommand):
    help = f"Grava o esquema GraphQL (SDL) de /api/graphql/ em {SCHEMA_FILE}; com --check, só confere o arquivo."

    def add_arguments(self, parser):
        parser.add_argument("--output", type=Path, default=None,
                            help=f"Arquivo a gravar ou conferir (padrão: {SCHEMA_FILE}); '-' imprime na saída.")
        parser.add_argument("--check", action="store_true",
                            help="Não grava: sai com erro se o arquivo difere do esquema do código.")

    def handle(self, *args, output, check, **options):
        text = printed_schema()
        if str(output) == "-":
            self.stdout.write(text, ending="")
            return
        path = output if output is not None else Path(settings.BASE_DIR) / SCHEMA_FILE
        if check:
            try:
                current = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"Não foi possível ler {path}: {exc.strerror or exc}.") from None
            if current != text:
                raise CommandError(f"{path} está desatualizado em relação ao código; rode: python manage.py graphql_schema")
            self.stdout.write(f"{path} confere com o esquema do código.")
            return
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Não foi possível gravar {path}: {exc.strerror or exc}.") from None
        self.stdout.write(f"Esquema GraphQL gravado em {path}.")
