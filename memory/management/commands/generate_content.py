"""The catalog run: content for every product of a catalog, reusing the memory.

Exit status: 0 when every product was served or generated; 1 for a command error (no catalog,
an unreadable one, a database down) or rows skipped as invalid; 3 (``EXIT_INCOMPLETE``) when
a generation failed or products were not attempted (the provider took no more calls): running
the command again reuses what was saved and finishes the rest.

What it prints of the catalog (row errors, product ids, file names) goes through
``memory.management.terminal``, so a terminal shows it and obeys none of it.
"""
from __future__ import annotations

import sys
from itertools import islice
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from memory.infra.migration_state import MissingDatabase, PendingMigrations, require_migrated
from memory.io.catalog import CATALOG_FORMATS, read_catalog
from memory.infra.formatting import cost, integer
from memory.management.batch_output import BatchOutput
from memory.management.terminal import EXIT_INCOMPLETE, dumps, memory_log_level, plain
from memory.services.generation import (
    FAILED, LOCKED, MAX_BATCH_SIZE, NOT_ATTEMPTED, REGENERATED, REUSED, BatchResult, generate_batch,
    validate_batch_size,
)
from memory.engine.identifiers import extract_product_identifier
from memory.providers import GenerationError
from memory.services.stats import saved_cost

# Rows handed to one batch call: bounds memory on large catalogs.
ROWS_PER_BATCH_CALL = 500


class Command(BaseCommand):
    help = "Gera conteúdo para os produtos de um catálogo (CSV, JSON, JSONL ou XLSX, .gz aceito), reaproveitando a memória."

    def add_arguments(self, parser):
        parser.add_argument("catalog", nargs="?", help="arquivo do catálogo")
        parser.add_argument("--format", choices=CATALOG_FORMATS, help="formato (padrão: pela extensão; .gz aceito)")
        parser.add_argument("--batch-size", type=int, default=10,
                            help=f"gerações por lote (1 a {MAX_BATCH_SIZE}, padrão 10)")
        parser.add_argument("--force", action="store_true", help="regenera mesmo o que está na memória")
        parser.add_argument("--override-approval", action="store_true",
                            help="com --force, regenera também o conteúdo aprovado (a aprovação é retirada)")
        parser.add_argument("--json", action="store_true", help="resumo em JSON")
        batch = parser.add_argument_group("Batch API (LLM_PROVIDER=openai)")
        batch.add_argument("--batch-api", action="store_true",
                           help="envia os produtos que faltam na memória como um lote da Batch API (preço com"
                                " desconto de LLM_BATCH_DISCOUNT), espera os resultados e os grava na memória")
        batch.add_argument("--no-wait", action="store_true",
                           help="com --batch-api: mostra o id do lote e sai sem esperar; os resultados são"
                                " gravados por --batch-status ID ou pela tarefa agendada")
        batch.add_argument("--batch-status", metavar="ID",
                           help="consulta o lote ID e, se concluído, grava seus resultados na memória")
        batch.add_argument("--poll-interval", type=float, default=30.0,
                           help="segundos entre as consultas do lote enquanto espera (padrão 30)")

    def handle(self, *args, **options):
        try:
            with memory_log_level(options["verbosity"]):
                return self._checked(options)
        except CommandError as exc:
            # Its message may quote the catalog's name or one of its lines.
            raise CommandError(plain(exc), returncode=exc.returncode) from None

    def _checked(self, options):
        """The run, every failure turned into one ``CommandError``."""
        batch = BatchOutput(self, options)
        batch.check_options()
        if options["batch_status"] is not None:
            return self._database_errors(batch.status)
        path = Path(options["catalog"])
        if not path.is_file():
            raise CommandError(f"Catálogo não encontrado: {path}")
        try:
            validate_batch_size(options["batch_size"], "--batch-size")
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["batch_api"]:
            batch.provider()  # refused before the catalog is read
            return self._database_errors(lambda: batch.run(path, *self._read_catalog(path, options)))
        return self._database_errors(lambda: self._run(path, options))

    def _database_errors(self, work):
        """``work()``, every failure of the database, the catalog or the provider one ``CommandError``."""
        try:
            require_migrated()
            return work()
        except (PendingMigrations, MissingDatabase) as exc:
            raise CommandError(str(exc)) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise CommandError(f"Não foi possível ler o catálogo: {exc}") from None
        except GenerationError as exc:
            raise CommandError(f"Falha na geração: {exc}") from None
        except DatabaseError as exc:
            # The first line: psycopg adds the statement and a caret on the lines below.
            first_line = (str(exc).strip().splitlines() or [""])[0]
            raise CommandError(f"Banco de dados indisponível: {exc.__class__.__name__}: {first_line}") from None

    def _read_catalog(self, path: Path, options) -> tuple[list[tuple[int, dict]], list[tuple[int, str]]]:
        """The catalog's products ``(line, data)`` and its bad rows ``(line, error)``."""
        bad_rows: list[tuple[int, str]] = []
        valid: list[tuple[int, dict]] = []
        for row in read_catalog(path, options["format"]):
            if row.error is None:
                try:
                    extract_product_identifier(row.product)
                except ValueError as exc:
                    row = type(row)(row.number, error=str(exc))
            if row.error:
                bad_rows.append((row.number, row.error))
            else:
                valid.append((row.number, row.product))
        if not valid and not bad_rows:
            raise CommandError(f"Catálogo vazio: nenhum produto em {path}")
        return valid, bad_rows

    def _run(self, path: Path, options):
        valid, bad_rows = self._read_catalog(path, options)

        result = BatchResult()
        failed_rows: list[tuple[int, str]] = []
        not_attempted_rows: list[int] = []
        progress = self._progress(len(valid))
        with progress:
            task = progress.add_task("Gerando conteúdo", total=len(valid))
            rows = iter(valid)
            while chunk := list(islice(rows, ROWS_PER_BATCH_CALL)):
                batch = generate_batch(
                    [product for _, product in chunk],
                    batch_size=options["batch_size"],
                    force_regenerate=options["force"],
                    override_approval=options["override_approval"],
                    on_outcome=lambda _: progress.advance(task),
                    halted=result.halted,  # once the provider takes no more calls, the run stops calling it
                )
                for outcome in batch.outcomes:
                    if outcome.status == FAILED:
                        failed_rows.append((chunk[outcome.index][0], outcome.error or ""))
                    elif outcome.status == NOT_ATTEMPTED:
                        not_attempted_rows.append(chunk[outcome.index][0])
                result.outcomes.extend(batch.outcomes)
                result.halted = result.halted or batch.halted

        summary = self._summary(result, bad_rows)
        if options["json"]:
            self.stdout.write(dumps({**summary, "halted": result.halted, "bad_rows": bad_rows,
                                     "failed_rows": failed_rows, "not_attempted_rows": not_attempted_rows},
                                    indent=2))
        else:
            self._print(summary, bad_rows, failed_rows, result.halted)
        if failed_rows or not_attempted_rows:
            raise CommandError(self._incomplete(len(bad_rows), len(failed_rows), len(not_attempted_rows)),
                               returncode=EXIT_INCOMPLETE)
        if bad_rows:
            raise CommandError(f"{len(bad_rows)} linha(s) inválida(s) ignorada(s)")

    @staticmethod
    def _incomplete(bad: int, failed: int, not_attempted: int) -> str:
        """The last line of a run that left products without content: what to do about it."""
        skipped = f"{bad} linha(s) inválida(s) ignorada(s); " if bad else ""
        return (f"Execução incompleta: {skipped}{failed} falha(s) de geração e {not_attempted} produto(s) "
                f"não tentado(s); rode o comando de novo para concluir (o que já foi salvo é reutilizado)")

    def _summary(self, result: BatchResult, bad_rows) -> dict:
        saved = saved_cost(result.tokens_saved)
        derived, families = result.derived()
        return {
            "products": len(result.outcomes) + len(bad_rows),
            "reused": result.count(REUSED),
            "generated": result.summary()["generated"],
            "stale_regenerated": result.count(REGENERATED),
            "failed": result.count(FAILED) + len(bad_rows),
            "not_attempted": result.count(NOT_ATTEMPTED),
            "locked": result.count(LOCKED),
            "tokens_spent": result.tokens_spent,
            "tokens_saved": result.tokens_saved,
            "tokens_wasted": result.tokens_wasted,
            "estimated_cost_saved_usd": None if saved is None else float(saved),
            "derived_variants": derived,
            "families": families,
            "tokens_saved_by_family": result.tokens_saved_by_family,
        }

    def _progress(self, total: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(file=sys.stderr)
        return Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, disable=not console.is_terminal or total == 0, transient=True,
        )

    def _print(self, summary: dict, bad_rows, failed_rows, halted: str | None) -> None:
        from rich.console import Console
        from rich.table import Table

        for number, error in bad_rows:
            self.stderr.write(plain(f"linha {number}: {error}"))
        for number, error in failed_rows:
            self.stderr.write(plain(f"linha {number}: falha na geração: {error}"))
        if halted:
            self.stderr.write(plain(f"Geração interrompida: {halted}; {summary['not_attempted']} produto(s) "
                                    f"não tentado(s), sem chamada ao provedor"))
        table = Table(title="Resumo da execução do catálogo", show_header=False)
        labels = {
            "products": "Produtos",
            "reused": "Reutilizados da memória",
            "generated": "Gerados",
            "stale_regenerated": "Regenerados (desatualizados)",
            "failed": "Falhas",
            "not_attempted": "Não tentados (sem chamada ao provedor)",
            "locked": "Aprovados, não regenerados",
            "tokens_spent": "Tokens gastos",
            "tokens_saved": "Tokens economizados",
            "tokens_wasted": "Tokens desperdiçados (tentativas falhas ou descartadas)",
            "estimated_cost_saved_usd": "Custo estimado economizado",
            "derived_variants": "Variantes derivadas de famílias",
            "families": "Famílias dessas variantes (uma geração cada)",
            "tokens_saved_by_family": "Tokens economizados por famílias",
        }
        for key, label in labels.items():
            value = summary[key]
            if key == "locked" and not value:
                continue  # only a forced run meets approved content
            table.add_row(label, cost(value) if key == "estimated_cost_saved_usd" else integer(value))
        Console(file=self.stdout, width=80).print(table)
