"""``manage_memory``: the memory from the terminal.

Each subcommand parses its options, calls one service function and shapes the
output: tables (rich) for people, ``--json`` for scripts. Every failure ends as
one ``CommandError`` line in pt-BR and a non-zero exit, never a traceback. Stored
and user-given text (ids, titles, file names, error messages) goes through
``memory.management.terminal``, so a terminal shows it and obeys none of it.

Exit codes: 0 success; 1 refused or failed (``clear``/``delete`` without
``--confirm``, unknown product, bad file, database down, ``health`` down, or
degraded with ``--strict``); 2 wrong usage (argparse).
"""
from __future__ import annotations

import argparse
import getpass
from contextlib import contextmanager
from datetime import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import Error as DatabaseLibraryError, ProgrammingError
from django.utils import timezone, translation

from memory.engine import partitions
from memory.engine.freshness import EntryStatus
from memory.engine.memory import MAX_LIST_LIMIT, ProductMemory
from memory.engine.versions import EntryNotFound, VersionNotFound
from memory.infra.formatting import cost, decimal, integer, milliseconds, percent, seconds, size
from memory.infra.health import check_health
from memory.infra.migration_state import MissingDatabase, PendingMigrations, require_migrated
from memory.io.export import write_export
from memory.io.formats import DEFAULT_EXPORT_FORMAT, EXPORT_FORMATS, IMPORT_FORMATS, format_from_filename
from memory.io.importer import ImportReport, import_entries
from memory.management.terminal import dumps, literal, memory_log_level, plain
from memory.models import DEFAULT_KIND, ContentOrigin, ProductMemoryEntry
from memory.services.backup import RedisUnavailable, create_backup, restore_backup, warm_redis
from memory.services.purge import purge_expired
from memory.services.refresh import BUDGET, BUSY, planned, refresh_ahead
from memory.services.stats import memory_stats
from memory.services.versions import entry_history, restore_version, set_approval

STAGES = {
    "export": "Exportando",
    "validate": "Validando",
    "write": "Gravando",
    "warm": "Aquecendo o Redis",
}
MAX_ERRORS_SHOWN = 50


def _when(value) -> str:
    if not isinstance(value, datetime):
        return "—"
    return timezone.localtime(value).strftime("%d/%m/%Y %H:%M")


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _one_of(names) -> str:
    """``json, jsonl ou csv``."""
    return f"{', '.join(names[:-1])} ou {names[-1]}" if len(names) > 1 else "".join(names)


def _labels(choices) -> dict[str, str]:
    """The choices' labels as a command prints them: in pt-BR, whatever language this thread has
    active (a command run by ``call_command`` after a request served in English)."""
    with translation.override(settings.LANGUAGE_CODE):
        return {value: str(label) for value, label in choices.choices}


def _terminal_user() -> str:
    """Who runs the command, as the versions and approvals record it."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (a container's uid)
        return "terminal"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


class Command(BaseCommand):
    help = (
        "Administração da memória de produtos: stats, list, export, import, health, "
        "clear, delete, backup, restore, warm, purge, partition, refresh-ahead, approve, versions, restore-version."
    )
    # Nothing here needs the system checks, and they would slow every call.
    requires_system_checks = []

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMANDO", title="subcomandos")

        def add(name, help_text, *, json_flag=True):
            p = sub.add_parser(name, help=help_text, description=help_text)
            # After the subcommand too (`manage_memory import -v 2`); unset, the one before it stands.
            p.add_argument("-v", "--verbosity", type=int, choices=[0, 1, 2, 3], default=argparse.SUPPRESS,
                           help="0 só os erros da memória, 1 também seus avisos (padrão), 2 também seu log INFO, 3 tudo")
            if json_flag:
                p.add_argument("--json", action="store_true", help="saída em JSON, para scripts")
            return p

        add("stats", "estatísticas: entradas, acertos, tokens, custo economizado, Redis, PostgreSQL, backups")

        p = add("list", "lista as entradas, as mais recentes primeiro")
        p.add_argument("--limit", type=int, default=50, help=f"quantas (1 a {MAX_LIST_LIMIT}, padrão 50)")
        p.add_argument("--offset", type=int, default=0, help="quantas pular (padrão 0)")
        p.add_argument("--search", help="busca por product_id ou título")
        p.add_argument("--kind", default=DEFAULT_KIND, help=f"tipo de conteúdo (padrão {DEFAULT_KIND})")

        p = add("export", f"exporta as entradas para um arquivo ({_one_of(EXPORT_FORMATS)})", json_flag=False)
        p.add_argument("--output-file", default="-", help="arquivo de saída (padrão: a saída padrão)")
        p.add_argument("--format", choices=EXPORT_FORMATS,
                       help=f"formato (padrão: pela extensão do arquivo, senão {DEFAULT_EXPORT_FORMAT})")
        p.add_argument("--limit", type=int, help="no máximo N entradas (as mais antigas primeiro)")

        p = add("import", f"importa um arquivo exportado ({_one_of(IMPORT_FORMATS)}); nada é gravado se houver erro")
        p.add_argument("--input-file", required=True, help="arquivo a importar (.gz aceito)")
        p.add_argument("--format", choices=IMPORT_FORMATS, help="formato (padrão: pela extensão)")
        p.add_argument("--dry-run", action="store_true", help="só valida e mostra o que aconteceria")

        p = add("health", "verifica PostgreSQL, Redis, pasta de backup e broker (sai com 1 se indisponível)")
        p.add_argument("--strict", action="store_true", help="sai com 1 também quando degradado")

        p = add("clear", "remove TODAS as entradas de todas as camadas", json_flag=False)
        p.add_argument("--confirm", action="store_true", help="confirma a remoção")

        p = add("delete", "remove um produto de todas as camadas", json_flag=False)
        p.add_argument("--product-id", required=True, help="identificador do produto")
        p.add_argument("--kind", default=DEFAULT_KIND, help=f"tipo de conteúdo (padrão {DEFAULT_KIND})")
        p.add_argument("--confirm", action="store_true", help="confirma a remoção")

        p = add("backup", "grava um snapshot JSONL gzip em MEMORY_BACKUP_DIR")
        p.add_argument("--keep", type=int, help="quantos backups manter (padrão MEMORY_BACKUP_KEEP)")

        p = add("restore", "carrega um backup (padrão: o mais recente); nada é gravado se houver erro")
        p.add_argument("--input-file", help="arquivo de backup, ou nome dentro de MEMORY_BACKUP_DIR")
        p.add_argument("--dry-run", action="store_true", help="só valida e mostra o que aconteceria")

        p = add("warm", "recarrega o Redis a partir do PostgreSQL (entradas ativas, as mais populares primeiro)")
        p.add_argument("--batch-size", type=int, default=1000, help="entradas por lote (padrão 1000)")

        p = add("purge", "remove as entradas expiradas, em lotes, de todas as camadas")
        p.add_argument("--batch-size", type=int,
                       default=getattr(settings, "MEMORY_PURGE_BATCH_SIZE", 5000), help="entradas por lote")

        p = add("partition", "particiona a tabela de entradas por mês de expiração (MEMORY_PARTITION_BY_EXPIRY="
                             "monthly; só PostgreSQL); as gravações esperam até o fim, as leituras seguem")
        p.add_argument("--undo", action="store_true", help="volta à tabela sem partições")

        p = add("refresh-ahead", "regenera já as entradas populares desatualizadas ou perto de expirar "
                                 "(como a tarefa agendada memory.refresh_ahead)")
        p.add_argument("--budget", type=int, help="tokens que esta execução pode gastar (padrão MEMORY_REFRESH_TOKEN_BUDGET)")
        p.add_argument("--dry-run", action="store_true", help="só lista as entradas que seriam renovadas primeiro")
        p.add_argument("--limit", type=int, default=20, help="quantas listar com --dry-run (padrão 20)")

        def product_options(p):
            p.add_argument("--product-id", required=True, help="identificador do produto")
            p.add_argument("--kind", default=DEFAULT_KIND, help=f"tipo de conteúdo (padrão {DEFAULT_KIND})")

        def author_option(p, what):
            p.add_argument("--by", help=f"quem {what} (padrão: o usuário do sistema, {_terminal_user()!r})")

        p = add("approve", "aprova o conteúdo de um produto: servido como está, nenhuma regeneração o substitui")
        product_options(p)
        p.add_argument("--revoke", action="store_true", help="retira a aprovação")
        author_option(p, "aprova")

        p = add("versions", "lista as versões do conteúdo de um produto, com o que cada uma mudou")
        product_options(p)

        p = add("restore-version", "restaura uma versão do conteúdo de um produto (como nova versão)")
        product_options(p)
        p.add_argument("--version", type=int, required=True, help="número da versão a restaurar")
        author_option(p, "restaura")

    # -- plumbing ---------------------------------------------------------------------

    def handle(self, *args, **options):
        try:
            with memory_log_level(options["verbosity"]):
                self._run(options)
        except CommandError as exc:
            # Its message may quote a product id, a file name or a line of a file.
            raise CommandError(plain(exc), returncode=exc.returncode) from None

    def _run(self, options):
        """The subcommand, every failure turned into one ``CommandError``."""
        handler = getattr(self, "handle_" + options["subcommand"].replace("-", "_"))
        try:
            if options["subcommand"] != "health":  # health reports pending migrations as "down" itself
                require_migrated()
            handler(options)
        except CommandError:
            raise
        except (PendingMigrations, MissingDatabase) as exc:
            raise CommandError(str(exc)) from None
        except ProgrammingError as exc:
            raise CommandError(
                f"Erro no banco de dados ({_first_line(exc)}); as migrações foram aplicadas? "
                "Rode: python manage.py migrate"
            ) from None
        except DatabaseLibraryError as exc:
            raise CommandError(f"Banco de dados indisponível: {_first_line(exc)}") from None
        except (RedisUnavailable, EntryNotFound, VersionNotFound) as exc:
            raise CommandError(str(exc)) from None
        except ValueError as exc:  # includes ImportFileError
            raise CommandError(_first_line(exc)) from None
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise CommandError(f"Erro de arquivo{where}: {exc.strerror or exc}") from None
        except KeyboardInterrupt:
            raise CommandError("Interrompido.") from None

    def _console(self):
        from rich.console import Console

        out = getattr(self.stdout, "_out", self.stdout)
        terminal = hasattr(out, "isatty") and out.isatty()
        return Console(file=out, width=None if terminal else 160, force_terminal=terminal or None)

    def _print_json(self, data) -> None:
        self.stdout.write(dumps(data, indent=2, default=_json_default))

    @contextmanager
    def _progress(self, enabled: bool = True):
        """``on_progress(stage, done, total)`` drawing rich bars; off when stdout is not a terminal."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = self._console()
        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, disable=not (enabled and console.is_terminal), transient=True,
        )
        tasks: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(STAGES.get(stage, stage), total=total)
            progress.update(tasks[stage], completed=done, total=total)

        with progress:
            yield on_progress

    def _table(self, title: str, rows: list[tuple[str, str]]):
        from rich.table import Table

        table = Table(title=title, show_header=False)
        table.add_column(style="bold")
        table.add_column(justify="right")
        for label, value in rows:
            table.add_row(label, literal(value))
        self._console().print(table)

    # -- read commands ---------------------------------------------------------------

    def handle_stats(self, options):
        stats = memory_stats()
        if options["json"]:
            return self._print_json(stats)
        redis = stats["redis"]
        self._table("Memória de produtos", [
            ("Entradas", integer(stats["total_entries"])),
            ("  ativas", integer(stats["active_entries"])),
            ("  expiradas", integer(stats["expired_entries"])),
            ("  desatualizadas", integer(stats["stale_entries"])),
            ("  aprovadas", integer(stats["approved_entries"])),
            ("  geradas", integer(stats["generated_entries"])),
            ("  editadas", integer(stats["edited_entries"])),
            ("  importadas", integer(stats["imported_entries"])),
            ("  restauradas", integer(stats["restored_entries"])),
            ("Acertos", integer(stats["hits"])),
            ("Faltas", integer(stats["misses"])),
            ("Taxa de acerto", percent(stats["hit_rate"])),
            ("Gerações", integer(stats.get("generations"))),
            ("Tokens gastos", integer(stats["tokens_spent"])),
            ("Tokens economizados", integer(stats["tokens_saved"])),
            ("Tokens desperdiçados", integer(stats["tokens_wasted"])),
            ("Tokens economizados por famílias", integer(stats["tokens_saved_by_family"])),
            ("Tokens gastos antecipadamente", integer(stats["tokens_spent_ahead"])),
            ("Faltas evitadas", integer(stats["misses_avoided"])),
            ("Custo estimado economizado", cost(stats["estimated_cost_saved"])),
            ("Redis", "disponível" if redis["available"] else "indisponível"),
            ("  modo", {"single": "um servidor", "sentinel": "Sentinel", "cluster": "Cluster"}.get(redis["mode"], "—")),
            *[(f"  {'master' if node['role'] == 'master' else 'sentinel'} {node['address']}",
               "respondeu" if node["reached"] else "não respondeu") for node in redis["nodes"] or []],
            ("  memória usada", size(redis["used_memory_bytes"])),
            ("  chaves", integer(redis["keys"])),
            ("Tabela no PostgreSQL", size(stats["database"]["table_bytes"])),
            ("Pasta de backup", f"{size(stats['backup_dir']['bytes'])} ({stats['backup_dir']['path']})"),
            ("Versão do gerador", str(stats.get("generator_version", "—"))),
        ])

    def handle_list(self, options):
        page = ProductMemory(options["kind"]).list_products(
            limit=options["limit"], offset=options["offset"], search=options["search"] or None,
        )
        if options["json"]:
            return self._print_json(page)
        from rich.table import Table

        table = Table(title=literal(f"Entradas ({options['kind']})", style="table.title"))
        for name, justify in (("Produto", "left"), ("Título", "left"), ("Status", "left"),
                              ("Acertos", "right"), ("Tokens economizados", "right"), ("Expira em", "left")):
            table.add_column(name, justify=justify)
        statuses = _labels(EntryStatus)
        for row in page["results"]:
            status = statuses.get(row["status"], row["status"]) + (" (aprovado)" if row["approved"] else "")
            table.add_row(
                literal(row["product_id"]), literal(row["title"] or "—"), status,
                integer(row["hit_count"]), integer(row["tokens_saved"]), _when(row["expires_at"]),
            )
        console = self._console()
        console.print(table)
        shown = len(page["results"])
        first = options["offset"] + 1 if shown else 0
        console.print(f"{first}–{options['offset'] + shown} de {integer(page['count'])} entradas")

    def handle_health(self, options):
        health = check_health()
        status = health["status"]
        if options["json"]:
            self._print_json(health)
        else:
            from rich.table import Table

            names = {"database": "PostgreSQL", "redis": "Redis", "backup_dir": "Pasta de backup", "broker": "Broker"}
            labels = {"ok": "[green]ok[/]", "degraded": "[yellow]degradado[/]", "down": "[red]indisponível[/]"}
            table = Table(title=f"Saúde da memória: {labels[status]}")
            for column in ("Verificação", "Estado", "Latência", "Detalhe"):
                table.add_column(column)
            for key, check in health["checks"].items():
                if check["ok"]:
                    state = "[green]ok[/]"
                    detail = ", ".join(f"{k}={v}" for k, v in check.items() if k not in ("ok", "latency_ms"))
                else:
                    state, detail = "[red]falha[/]", check.get("error", "")
                table.add_row(names.get(key, key), state, milliseconds(check["latency_ms"]), literal(detail))
            self._console().print(table)
        if status == "down":
            database = health["checks"]["database"]
            if database.get("pending_migrations") or database.get("missing_database"):
                raise CommandError(database["error"])  # the same line as every other subcommand's
            raise CommandError("Memória indisponível: o PostgreSQL não responde.")
        if status == "degraded" and options["strict"]:
            failed = ", ".join(k for k, c in health["checks"].items() if not c["ok"])
            raise CommandError(f"Memória degradada ({failed}).")

    # -- export and import --------------------------------------------------------------

    def handle_export(self, options):
        output = options["output_file"]
        to_stdout = output == "-"
        fmt = options["format"] or (None if to_stdout else format_from_filename(output)) or DEFAULT_EXPORT_FORMAT
        if fmt not in EXPORT_FORMATS:
            raise CommandError(f"format: {fmt} não é exportado pelo comando; use --format {'|'.join(EXPORT_FORMATS)}")
        if to_stdout:
            count = write_export(fmt, getattr(self.stdout, "_out", self.stdout), limit=options["limit"])
            self.stderr.write(f"{integer(count)} entradas exportadas ({fmt}).", style_func=lambda s: s)
            return
        with self._progress() as on_progress:
            count = write_export(fmt, output, limit=options["limit"], on_progress=on_progress)
        self.stdout.write(self.style.SUCCESS(plain(f"{integer(count)} entradas exportadas para {output} ({fmt}).")))

    def _report(self, report: ImportReport, options, what: str) -> None:
        if options["json"]:
            self._print_json(report.as_dict())
        if not report.ok:
            if not options["json"]:
                for number, message in report.errors[:MAX_ERRORS_SHOWN]:
                    self.stderr.write(plain(f"registro {number}: {message}"))
                hidden = report.error_count - min(len(report.errors), MAX_ERRORS_SHOWN)
                if hidden > 0:
                    self.stderr.write(f"… e mais {integer(hidden)} registro(s) inválido(s)")
            raise CommandError(
                f"{what} recusada: {integer(report.error_count)} de {integer(report.rows)} registro(s) "
                "inválido(s); nada foi gravado."
            )
        if options["json"]:
            return
        summary = (f"{integer(report.rows)} registros lidos: {integer(report.created)} novos, "
                   f"{integer(report.updated)} atualizados")
        if report.dry_run:
            self.stdout.write(f"Simulação ({what.lower()}): {summary}; nada foi gravado.")
        else:
            self.stdout.write(self.style.SUCCESS(f"{what} concluída: {summary}."))

    def handle_import(self, options):
        with self._progress(not options["json"]) as on_progress:
            report = import_entries(options["input_file"], options["format"], dry_run=options["dry_run"],
                                    on_progress=on_progress)
        self._report(report, options, "Importação")

    # -- writes ---------------------------------------------------------------------

    def handle_clear(self, options):
        if not options["confirm"]:
            total = ProductMemoryEntry.objects.count()
            raise CommandError(
                f"Recusado: 'clear' apaga todas as {integer(total)} entradas da memória. "
                "Repita com --confirm para confirmar."
            )
        count = ProductMemory().clear()
        self.stdout.write(self.style.SUCCESS(
            f"{integer(count)} entradas removidas da memória (PostgreSQL, Redis e cache local)."
        ))

    def handle_delete(self, options):
        product_id, kind = options["product_id"], options["kind"]
        if not options["confirm"]:
            raise CommandError(
                f"Recusado: 'delete' remove o produto {product_id!r} de todas as camadas. "
                "Repita com --confirm para confirmar."
            )
        if not ProductMemory(kind).delete_product(product_id):
            raise CommandError(f"Produto {product_id!r} não está na memória (tipo {kind}).")
        self.stdout.write(self.style.SUCCESS(plain(f"Produto {product_id!r} removido da memória.")))

    def handle_purge(self, options):
        result = purge_expired(batch_size=options["batch_size"])
        if options["json"]:
            return self._print_json(result.as_dict())
        self.stdout.write(self.style.SUCCESS(
            f"{integer(result.deleted)} entradas expiradas removidas em {integer(result.batches)} lote(s) "
            f"({seconds(result.seconds)}; lote mais longo {milliseconds(result.longest_batch_ms)})."
        ))

    def handle_partition(self, options):
        progress = (lambda line: None) if options["json"] or options["verbosity"] < 1 else (
            lambda line: self.stdout.write(f"  {plain(line)}"))
        try:
            if options["undo"]:
                result = partitions.undo(progress=progress)
            else:
                result = partitions.convert(progress=progress)
        except partitions.PartitionError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            return self._print_json({"undo": options["undo"], "rows": result.rows, "partitions": result.partitions,
                                     "seconds": result.seconds})
        if options["undo"]:
            message = f"Tabela de entradas sem partições de novo: {integer(result.rows)} entradas"
        else:
            message = (f"Tabela de entradas particionada por expiração: {integer(result.rows)} entradas em "
                       f"{integer(result.partitions)} partições")
        self.stdout.write(self.style.SUCCESS(f"{message} ({seconds(result.seconds)})."))

    # -- backup, restore, warm ---------------------------------------------------------

    def handle_backup(self, options):
        with self._progress(not options["json"]) as on_progress:
            result = create_backup(keep=options["keep"], on_progress=on_progress)
        if options["json"]:
            return self._print_json(result.as_dict())
        self.stdout.write(self.style.SUCCESS(plain(
            f"Backup criado: {result.path} ({integer(result.entries)} entradas, {size(result.bytes)})."
        )))
        if result.removed:
            self.stdout.write(plain(f"{len(result.removed)} backup(s) antigo(s) removido(s): "
                                    + ", ".join(p.name for p in result.removed)))

    def handle_restore(self, options):
        with self._progress(not options["json"]) as on_progress:
            report = restore_backup(options["input_file"], dry_run=options["dry_run"], on_progress=on_progress)
        self._report(report, options, "Restauração")

    def handle_warm(self, options):
        with self._progress(not options["json"]) as on_progress:
            result = warm_redis(batch_size=options["batch_size"], on_progress=on_progress)
        if options["json"]:
            return self._print_json(result.as_dict())
        self.stdout.write(self.style.SUCCESS(
            f"Redis aquecido: {integer(result.entries)} entradas ativas em {integer(result.batches)} lote(s) "
            f"({seconds(result.seconds)})."
        ))

    def handle_refresh_ahead(self, options):
        if options["dry_run"]:
            candidates = planned(limit=options["limit"])
            if options["json"]:
                return self._print_json([{"product_id": c.product_id, "hotness": round(c.hotness, 3),
                                          "estimated_tokens": c.estimate} for c in candidates])
            if not candidates:
                self.stdout.write("Nenhuma entrada popular a renovar agora.")
                return
            self._table("Renovação antecipada: as primeiras da fila", [
                (plain(c.product_id), f"popularidade {decimal(c.hotness)}, ~{integer(c.estimate)} tokens")
                for c in candidates
            ])
            return
        result = refresh_ahead(budget=options["budget"])
        if options["json"]:
            return self._print_json(result.as_dict())
        if result.stopped == BUSY:
            self.stdout.write("Outra renovação antecipada está em andamento; nada feito.")
            return
        self.stdout.write(self.style.SUCCESS(
            f"Renovação antecipada: {integer(result.refreshed)} de {integer(result.candidates)} entradas renovadas, "
            f"{integer(result.tokens_spent + result.tokens_wasted)} tokens gastos "
            f"(orçamento de {integer(result.budget)}; {seconds(result.seconds)})."
        ))
        if result.failed or result.skipped or result.locked:
            self.stdout.write(f"{integer(result.failed)} com falha, {integer(result.skipped)} ignoradas, "
                              f"{integer(result.locked)} aprovadas no meio do caminho.")
        if result.stopped == BUDGET:
            self.stdout.write("Parou no orçamento de tokens; as demais ficam para a próxima execução.")
        elif result.stopped:
            self.stdout.write(plain(f"Parou: o provedor não aceita mais chamadas ({result.stopped})."))

    # -- content: approval and history ---------------------------------------------------

    def handle_approve(self, options):
        approved = not options["revoke"]
        entry = set_approval(options["product_id"], approved, by=options["by"] or _terminal_user(),
                             kind=options["kind"])
        if options["json"]:
            return self._print_json({name: getattr(entry, name) for name in
                                     ("product_id", "kind", "approved", "approved_by", "approved_at", "version")})
        if approved:
            message = (f"Produto {entry.product_id!r} aprovado (versão {entry.version}) por {entry.approved_by}: "
                       "servido como está; nenhuma regeneração o substitui.")
        else:
            message = f"Produto {entry.product_id!r}: aprovação retirada."
        self.stdout.write(self.style.SUCCESS(plain(message)))

    def handle_versions(self, options):
        found = entry_history(options["product_id"], kind=options["kind"])
        if options["json"]:
            return self._print_json(found)
        from rich.table import Table

        origins = _labels(ContentOrigin)
        state = f"aprovado por {found['approved_by']} em {_when(found['approved_at'])}" if found["approved"] \
            else "não aprovado"
        table = Table(title=literal(f"Versões de {found['product_id']} ({found['kind']}): {state}",
                                    style="table.title"))
        for name, justify in (("Versão", "right"), ("Origem", "left"), ("Autor", "left"), ("Criada em", "left"),
                              ("Tokens", "right"), ("Campos alterados", "left")):
            table.add_column(name, justify=justify)
        for version in found["versions"]:
            number = f"{version['number']} (atual)" if version["current"] else str(version["number"])
            changes = version["changes"]
            changed = "—" if changes is None else ", ".join(c["field"] for c in changes) or "nenhum"
            table.add_row(number, origins.get(version["origin"], version["origin"]), literal(version["author"] or "—"),
                          _when(version["created_at"]), integer(version["tokens"]), literal(changed))
        self._console().print(table)

    def handle_restore_version(self, options):
        written = restore_version(options["product_id"], options["version"],
                                  author=options["by"] or _terminal_user(), kind=options["kind"])
        if options["json"]:
            return self._print_json(written.as_dict())
        self.stdout.write(self.style.SUCCESS(plain(
            f"Produto {written.product_id!r}: versão {written.restored_from} restaurada como versão {written.version}."
        )))
