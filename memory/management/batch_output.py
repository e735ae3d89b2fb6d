"""``generate_content``'s Batch API side: ``--batch-api`` (with ``--no-wait``) and
``--batch-status ID``. It checks the options, calls ``memory.services.batch_api`` and prints the
progress and the summary in pt-BR, every provider-given text through ``terminal``."""
from __future__ import annotations

import math
import sys

from django.conf import settings
from django.core.management.base import CommandError

from memory.infra.formatting import cost, integer, percent
from memory.management.terminal import EXIT_INCOMPLETE, dumps, literal, plain
from memory.models import BatchRun
from memory.providers import GenerationError, ProviderRejected
from memory.services import batch_api
from memory.services.generation import FAILED, GENERATED, REGENERATED, REUSED, BatchResult
from memory.services.stats import saved_cost

SUMMARY_LABELS = {
    "products": "Produtos",
    "reused": "Reutilizados da memória",
    "generated": "Gerados",
    "stale_regenerated": "Regenerados (desatualizados)",
    "kept": "Já na memória quando o resultado chegou (mantidos)",
    "duplicates": "Repetidos no catálogo",
    "pending": "Ainda no lote (sem resultado)",
    "failed": "Falhas",
    "tokens_spent": "Tokens gastos",
    "tokens_saved": "Tokens economizados",
    "tokens_wasted": "Tokens desperdiçados (tentativas falhas ou descartadas)",
    "estimated_batch_cost_usd": "Custo estimado dos lotes",
    "estimated_cost_saved_usd": "Custo estimado economizado",
    "derived_variants": "Variantes derivadas de famílias",
    "families": "Famílias dessas variantes (uma geração cada)",
    "tokens_saved_by_family": "Tokens economizados por famílias",
}
RUN_LABELS = {
    "batch_id": "Lote",
    "status": "Situação",
    "provider_status": "Situação no provedor",
    "requests": "Requisições enviadas",
    "completed_requests": "Concluídos no provedor",
    "failed_requests": "Com falha no provedor",
    "generated": "Gerados",
    "regenerated": "Regenerados (desatualizados)",
    "kept": "Já na memória quando o resultado chegou (mantidos)",
    "failed": "Falhas",
    "tokens_prompt": "Tokens do prompt",
    "tokens_completion": "Tokens da resposta",
    "tokens_wasted": "Tokens desperdiçados",
    "estimated_cost_usd": "Custo estimado do lote",
    "derived_variants": "Variantes derivadas de famílias",
    "families": "Famílias dessas variantes (uma requisição cada)",
    "tokens_saved_by_family": "Tokens economizados por famílias",
}
STATUS_WORDS = {BatchRun.PREPARING: "preparando", BatchRun.SUBMITTED: "enviado", BatchRun.DONE: "concluído"}


class BatchOutput:
    def __init__(self, command, options: dict):
        self.command = command
        self.options = options
        self._provider = None

    @property
    def stdout(self):
        return self.command.stdout

    @property
    def stderr(self):
        return self.command.stderr

    def _note(self, text: str) -> None:
        """A progress line on stderr, unstyled (stderr's style is for errors)."""
        self.stderr.write(plain(text), style_func=lambda line: line)

    def check_options(self) -> None:
        options = self.options
        if options["batch_status"] is not None:
            if options["catalog"] or options["batch_api"]:
                raise CommandError("--batch-status: consulta um lote já enviado; não informe catálogo nem --batch-api")
        elif not options["catalog"]:
            raise CommandError("catalog: informe o arquivo do catálogo (ou --batch-status ID)")
        if options["no_wait"] and not options["batch_api"]:
            raise CommandError("--no-wait: só vale com --batch-api")
        if options["batch_api"] and options["force"]:
            raise CommandError("--force: não combina com --batch-api, que nunca sobrescreve o que já está na"
                               " memória; para regenerar, rode sem --batch-api")
        interval = options["poll_interval"]
        if not (math.isfinite(interval) and interval > 0):
            raise CommandError(f"--poll-interval: use um número de segundos maior que 0, não {interval!r}")

    def provider(self):
        if self._provider is None:
            try:
                self._provider = batch_api.batch_provider()
            except batch_api.BatchApiUnavailable as exc:
                flag = "--batch-status" if self.options["batch_status"] is not None else "--batch-api"
                raise CommandError(f"{flag}: {exc}") from None
        return self._provider

    # -- generate_content CATALOG --batch-api -------------------------------------------------

    def run(self, path, valid: list[tuple[int, dict]], bad_rows: list[tuple[int, str]]):
        try:
            submission = batch_api.submit_catalog([product for _, product in valid], provider=self.provider())
        except ProviderRejected as exc:
            raise CommandError(f"Falha no envio do lote: {exc}; nada foi enviado") from None
        except GenerationError as exc:
            raise CommandError(
                f"Falha no envio do lote: {exc}; os produtos ficam reservados: rode o mesmo comando de novo"
                f" (ou deixe a tarefa agendada) para retomar o envio, sem enviar nenhum produto duas vezes"
            ) from None
        new = {run.pk for run in submission.new_runs}
        for run in submission.runs:
            if run.pk in new:
                bases, variants = batch_api.family_lines(run)
                if bases:
                    self._note(f"Lote {run.batch_id or run.reference} enviado: {integer(run.requests)} requisição(ões)"
                               f" para {integer(run.requests - bases + variants)} produto(s); {integer(variants)}"
                               f" variante(s) de {integer(bases)} família(s), uma requisição por família")
                else:
                    self._note(f"Lote {run.batch_id or run.reference} enviado: {integer(run.requests)} produto(s)")
            else:
                self._note(f"Retomando o lote {run.batch_id or run.reference}, enviado antes, com produtos deste"
                           f" catálogo (não são enviados de novo)")
        if submission.runs and not self.options["no_wait"]:
            self._wait(submission.runs)
        outcomes = batch_api.outcomes(submission)
        failed_rows = [(valid[o.index][0], o.error or "") for o in outcomes if o.status == FAILED]
        summary, runs = self._summary(outcomes, bad_rows, submission.runs)
        if self.options["json"]:
            self.stdout.write(dumps({**summary, "bad_rows": bad_rows, "failed_rows": failed_rows}, indent=2))
        else:
            self._print(summary, bad_rows, failed_rows)
            waiting = [run for run in runs if run.status != BatchRun.DONE]
            if waiting:
                ids = ", ".join(run.batch_id or str(run.reference) for run in waiting)
                self.stdout.write(plain(
                    f"Lote(s) em andamento: {ids}. Os resultados são gravados na memória pela tarefa agendada"
                    f" ou por: python manage.py generate_content --batch-status {waiting[0].batch_id or 'ID'}"))
        if failed_rows:
            raise CommandError(
                f"{len(bad_rows)} linha(s) inválida(s) ignorada(s) e {len(failed_rows)} falha(s) de geração;"
                f" rode o comando de novo para enviar esses produtos outra vez", returncode=EXIT_INCOMPLETE)
        if bad_rows:
            raise CommandError(f"{len(bad_rows)} linha(s) inválida(s) ignorada(s)")

    def _wait(self, runs: list[BatchRun]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(file=sys.stderr)
        shown: dict[int, tuple] = {}
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, disable=not console.is_terminal, transient=True) as progress:
            tasks = {run.pk: progress.add_task(plain(f"Lote {run.batch_id or run.reference}"), total=run.requests)
                     for run in runs}

            def on_progress(current: list[BatchRun]) -> None:
                for run in current:
                    done = run.completed_requests + run.failed_requests
                    word = run.provider_status or STATUS_WORDS[run.status]
                    progress.update(tasks[run.pk], completed=done, total=max(run.requests, done),
                                    description=plain(f"Lote {run.batch_id or run.reference}: {word}"))
                    state = (run.status, run.provider_status, done)
                    if not console.is_terminal and shown.get(run.pk) != state:
                        shown[run.pk] = state
                        self._note(f"Lote {run.batch_id or run.reference}: {word}, {integer(done)}/"
                                   f"{integer(run.requests)} requisições concluídas")

            try:
                batch_api.wait(runs, self.provider(), poll_interval=self.options["poll_interval"],
                               on_progress=on_progress)
            except KeyboardInterrupt:
                ids = ", ".join(run.batch_id or str(run.reference) for run in runs)
                raise CommandError(
                    f"Interrompido: o lote {ids} continua no provedor; os resultados são gravados pela tarefa"
                    f" agendada ou por generate_content --batch-status ID", returncode=130) from None

    def _summary(self, outcomes, bad_rows, runs: list[BatchRun]) -> tuple[dict, list[BatchRun]]:
        def count(status):
            return sum(1 for o in outcomes if o.status == status)

        tokens_saved = sum(o.tokens_saved for o in outcomes)
        derived, families = BatchResult(list(outcomes)).derived()
        saved = saved_cost(tokens_saved)
        runs = list(BatchRun.objects.filter(pk__in=[run.pk for run in runs]).order_by("pk"))
        finished = [run for run in runs if run.status == BatchRun.DONE]
        costs = [run.cost_usd for run in finished]
        return {
            "products": len(outcomes) + len(bad_rows),
            "reused": count(REUSED),
            "generated": count(GENERATED),
            "stale_regenerated": count(REGENERATED),
            "kept": count(batch_api.KEPT),
            "duplicates": count(batch_api.DUPLICATE),
            "pending": count(batch_api.PENDING),
            "failed": count(FAILED) + len(bad_rows),
            "tokens_spent": sum(o.tokens_spent for o in outcomes),
            "tokens_saved": tokens_saved,
            "tokens_wasted": sum(o.tokens_wasted for o in outcomes),
            "estimated_batch_cost_usd": None if None in costs else float(sum(costs)),
            "estimated_cost_saved_usd": None if saved is None else float(saved),
            "derived_variants": derived,
            "families": families,
            "tokens_saved_by_family": sum(o.tokens_saved_by_family for o in outcomes),
            "batch_discount": settings.LLM_BATCH_DISCOUNT,
            "batches": [batch_api.run_summary(run) for run in runs],
        }, runs

    def _print(self, summary: dict, bad_rows, failed_rows) -> None:
        from rich.console import Console
        from rich.table import Table

        for number, error in bad_rows:
            self.stderr.write(plain(f"linha {number}: {error}"))
        for number, error in failed_rows:
            self.stderr.write(plain(f"linha {number}: falha na geração: {error}"))
        discount = percent(settings.LLM_BATCH_DISCOUNT, 0)
        table = Table(title=f"Resumo do catálogo pela Batch API ({discount} do preço)", show_header=False)
        for key, label in SUMMARY_LABELS.items():
            value = summary[key]
            table.add_row(label, cost(value) if key.endswith("_usd") else integer(value))
        Console(file=self.stdout, width=80).print(table)

    # -- generate_content --batch-status ID ---------------------------------------------------

    def status(self):
        try:
            run = batch_api.find_run(self.options["batch_status"])
        except ValueError as exc:
            raise CommandError(f"--batch-status: {exc}") from None
        if run.status != BatchRun.DONE:
            run = batch_api.refresh(run, self.provider())
        summary = batch_api.run_summary(run)
        failed = batch_api.failed_items(run) if run.status == BatchRun.DONE else []
        if self.options["json"]:
            self.stdout.write(dumps({**summary, "failed_products": failed}, indent=2))
        else:
            self._print_run(summary, failed)
        if run.status == BatchRun.DONE and run.failed:
            raise CommandError(f"{run.failed} falha(s) de geração no lote {run.batch_id}; rode o comando de novo"
                               f" para enviar esses produtos outra vez", returncode=EXIT_INCOMPLETE)

    def _print_run(self, summary: dict, failed) -> None:
        from rich.console import Console
        from rich.table import Table

        for product_id, error in failed:
            self.stderr.write(plain(f"produto {product_id}: falha na geração: {error}"))
        table = Table(title="Lote da Batch API", show_header=False)
        for key, label in RUN_LABELS.items():
            value = summary[key]
            if key == "status":
                shown = literal(STATUS_WORDS.get(value, value))
            elif key in ("batch_id", "provider_status"):
                shown = literal(value or "-")
            elif key.endswith("_usd"):
                shown = cost(value)
            else:
                shown = integer(value)
            table.add_row(label, shown)
        Console(file=self.stdout, width=80).print(table)
        if summary["status"] != BatchRun.DONE:
            self.stdout.write(plain(f"O lote ainda não terminou; consulte de novo mais tarde: generate_content"
                                    f" --batch-status {summary['batch_id'] or ''}".rstrip()))
