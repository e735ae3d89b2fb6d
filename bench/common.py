"""Shared helpers of the bench suite: Django set-up on the bench stores, data, timing, machine facts.

Not a test module (pytest never collects ``bench/``). Every script refuses to
run against anything but the PostgreSQL database ``bench`` and Redis db 8
unless ``BENCH_ALLOW_ANY_STORE=1`` says otherwise, because the scripts delete
and refill what they find there.
"""
from __future__ import annotations

import json
import os
import platform
import random
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "var" / "bench"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/8"


def setup_django(*, log_level: str = "WARNING") -> None:
    """Point Django at the bench stores and start it.

    ``MEMORY_LOG_LEVEL`` defaults to WARNING here: at INFO every hit writes a
    log line, which is a cost of the configuration, not of the memory (the
    side-by-side script measures that line separately).
    """
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("REDIS_URL", DEFAULT_REDIS_URL)
    os.environ.setdefault("MEMORY_LOG_LEVEL", log_level)
    os.environ.setdefault("CELERY_BROKER_URL", "")
    # Production settings (DEBUG off) refuse a public key; a bench run needs only some key.
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beecatalog.settings")
    if os.environ.get("BENCH_ALLOW_ANY_STORE") != "1":
        if not os.environ["DATABASE_URL"].rstrip("/").endswith("/bench"):
            sys.exit(f"bench: DATABASE_URL must name the database 'bench' (got {os.environ['DATABASE_URL']})")
        if not os.environ["REDIS_URL"].rstrip("/").endswith("/8"):
            sys.exit(f"bench: REDIS_URL must be Redis db 8 (got {os.environ['REDIS_URL']})")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    _create_database_if_missing()
    from django.core.management import call_command

    # A fresh machine's bench database is empty: bring its tables up before the first query.
    call_command("migrate", verbosity=0)


def _create_database_if_missing() -> None:
    """A fresh machine has no ``bench`` database: create it (as ``createdb bench`` would)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    import psycopg
    from psycopg import sql

    params = connection.get_connection_params()
    name = params.pop("dbname")
    params = {key: value for key, value in params.items() if key in {"host", "port", "user", "password"}}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"bench: created the database {name!r}", file=sys.stderr)


# -- data ---------------------------------------------------------------------

CATEGORIES = {
    "Moda": (["Camiseta Básica", "Calça Jeans Slim", "Vestido Midi Floral", "Jaqueta Corta-Vento"],
             ["Hering", "Malwee", "Renner", "Reserva"], ["Algodão", "Poliéster", "Linho", "Viscose"]),
    "Eletrônicos": (["Fone Bluetooth", "Carregador Turbo USB-C", "Caixa de Som Portátil", "Smartwatch Esportivo"],
                    ["JBL", "Xiaomi", "Multilaser", "Logitech"], ["Plástico ABS", "Alumínio", "Silicone"]),
    "Casa e Cozinha": (["Panela de Pressão 4,5 L", "Jogo de Facas Inox", "Garrafa Térmica 1 L", "Air Fryer 4 L"],
                       ["Tramontina", "Mondial", "Electrolux", "Stanley"], ["Aço Inox", "Alumínio", "Vidro"]),
    "Esporte": (["Tênis de Corrida Leve", "Bola de Futebol Campo", "Tapete de Yoga", "Luva de Goleiro"],
                ["Olympikus", "Penalty", "Mizuno", "Adidas"], ["EVA", "Borracha", "Nylon"]),
    "Pet": (["Ração Premium Cães Adultos 15 kg", "Arranhador para Gatos", "Caminha Pet Média"],
            ["Pedigree", "Golden", "Premier", "Whiskas"], ["Nylon", "Aço Inox", "Pelúcia"]),
}
COLORS = ["Preto", "Branco", "Azul-Marinho", "Vermelho", "Verde-Musgo", "Cinza", "Rosa", "Bege"]
SENTENCES = [
    "Desenvolvido para o uso diário, combina acabamento cuidadoso com materiais de alta durabilidade.",
    "A praticidade aparece em cada detalhe, do encaixe preciso à limpeza rápida depois do uso.",
    "Ideal para quem busca qualidade sem abrir mão de um preço justo e de uma marca reconhecida.",
    "Passou por testes rigorosos de resistência e segue as normas técnicas vigentes no Brasil.",
    "O design discreto combina com diferentes estilos e ambientes, da cozinha ao escritório.",
    "Acompanha manual em português e garantia de doze meses contra defeitos de fabricação.",
    "A embalagem é reciclável e o produto chega pronto para usar, sem montagem complicada.",
    "Clientes destacam o conforto, a leveza e o ótimo custo-benefício em relação aos concorrentes.",
]


def product(n: int) -> dict:
    """The source data of product ``n``: deterministic, realistic pt-BR attributes."""
    rng = random.Random(n)
    category = rng.choice(list(CATEGORIES))
    names, brands, materials = CATEGORIES[category]
    color = rng.choice(COLORS)
    return {
        "sku": f"BENCH-{n:07d}",
        "title": f"{rng.choice(names)} {color}",
        "brand": rng.choice(brands),
        "category": category,
        "color": color,
        "material": rng.choice(materials),
        "price": f"{rng.uniform(19.9, 899.9):.2f}",
    }


def content_for(data: dict, target_bytes: int = 3000) -> dict:
    """Generated-looking content of about ``target_bytes`` of UTF-8 JSON (pt-BR, with accents)."""
    rng = random.Random(data["sku"])
    title = f"{data['title']} {data['brand']}"
    paragraphs = [f"Conheça {title}: {rng.choice(SENTENCES).lower()}"]
    bullets = [f"Marca: {data['brand']}", f"Material: {data['material']}", f"Cor: {data['color']}",
               "Garantia de 12 meses", "Envio para todo o Brasil"]
    keywords = [w.lower() for w in (data["title"].split() + [data["brand"], data["category"]])][:10]
    content = {"title": title, "description": "", "bullet_points": bullets, "seo_keywords": keywords}
    while True:
        content["description"] = "\n\n".join(paragraphs)
        if len(json.dumps(content, ensure_ascii=False).encode()) >= target_bytes:
            return content
        paragraphs.append(" ".join(rng.sample(SENTENCES, 3)))


# -- timing -------------------------------------------------------------------

def timed(func, *args, **kwargs) -> float:
    """Seconds one call takes."""
    started = time.perf_counter()
    func(*args, **kwargs)
    return time.perf_counter() - started


def summary(samples: list[float]) -> dict:
    """Median and spread of per-call times, in microseconds."""
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_us": round(statistics.median(ordered) * 1e6, 1),
        "p10_us": round(ordered[len(ordered) // 10] * 1e6, 1),
        "p90_us": round(ordered[len(ordered) * 9 // 10] * 1e6, 1),
    }


def peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by this process and by the local PostgreSQL's processes (its
    backends, checkpointer and WAL writer, read off /proc: a server on this machine only), to
    tell which side of a bulk path is the bottleneck."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    ticks = 0
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        name, _, rest = stat.partition(" (")[2].rpartition(") ")
        if name in ("postgres", "postmaster"):
            fields = rest.split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return {"python": usage.ru_utime + usage.ru_stime, "postgresql": ticks / os.sysconf("SC_CLK_TCK")}


# -- the machine --------------------------------------------------------------

def _first_line(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def machine() -> dict:
    """Hardware, versions and load: what makes these numbers comparable."""
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
    import django
    import psycopg
    import redis

    info = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "psycopg": psycopg.__version__,
        "redis_py": redis.__version__,
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    try:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            info["postgresql"] = cursor.fetchone()[0]
        from django.core.cache import caches

        info["redis_server"] = caches["memory_l2"].client.get_client().info("server")["redis_version"]
    except Exception as exc:  # the facts are best effort; the measurement is what matters
        info["versions_error"] = repr(exc)
    return info


def forget_catalog(products: list[dict]) -> int:
    """Delete the entries of a catalog's products, and of their families' bases, from every tier
    (the bench database keeps the rest: the 1M rows of the scale runs). Returns the rows deleted."""
    from memory.engine.families import FAMILY_KIND, product_family
    from memory.engine.identifiers import extract_product_identifier
    from memory.engine.memory import ProductMemory
    from memory.models import DEFAULT_KIND, ProductMemoryEntry

    keys = {(extract_product_identifier(p), DEFAULT_KIND) for p in products}
    keys |= {(family.id, FAMILY_KIND) for family in map(product_family, products) if family}
    deleted = 0
    for product_id, kind in keys:
        deleted += ProductMemoryEntry.objects.filter(product_id=product_id, kind=kind).delete()[0]
    ProductMemory().evict(sorted(keys))
    return deleted


def save_results(name: str, results: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str))
    return path


# -- catalog runs against the fake OpenAI server -------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_stats(port: int) -> dict:
    """What ``bench/fake_openai_server.py`` has answered so far (completions, tokens)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/stats", timeout=5) as response:
        return json.loads(response.read())


@contextmanager
def fake_openai(max_seconds: int) -> Iterator[tuple[int, dict]]:
    """``bench/fake_openai_server.py`` on a free loopback port, answering, stopped at the end (or
    after ``max_seconds`` by itself): its port, and the environment pointing ``manage.py`` at it."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "fake_openai_server.py"), "--port", str(port),
         "--max-seconds", str(max_seconds)],
        cwd=ROOT, stderr=subprocess.DEVNULL,
    )
    env = {**os.environ, "LLM_PROVIDER": "openai", "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
           "OPENAI_API_KEY": "bench", "MEMORY_LOG_LEVEL": "WARNING"}
    try:
        for _ in range(50):
            try:
                server_stats(port)
                break
            except OSError:
                time.sleep(0.1)
        yield port, env
    finally:
        server.terminate()
        server.wait(timeout=10)


def run_catalog(path: Path, port: int, env: dict, timeout: int) -> tuple[float, int, dict, dict]:
    """``manage.py generate_content path --json`` against the fake server on ``port``: the run's
    seconds, exit code and summary, and what the server billed for it (``llm_calls``,
    ``llm_tokens_billed``)."""
    before = server_stats(port)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "manage.py", "generate_content", str(path), "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    seconds = time.perf_counter() - started
    after = server_stats(port)
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    billed = {
        "llm_calls": after["completions"] - before["completions"],
        "llm_tokens_billed": (after["prompt_tokens"] + after["completion_tokens"])
        - (before["prompt_tokens"] + before["completion_tokens"]),
    }
    return seconds, done.returncode, summary, billed
