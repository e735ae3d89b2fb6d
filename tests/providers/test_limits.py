"""The provider's rate limit and circuit breaker, held for every process together through Redis
(real Redis and real processes), and per process when Redis is absent or down."""
import json
import logging
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from memory.infra import metrics
from memory.providers import CircuitOpen, OpenAIProvider, ProviderUnavailable, QuotaExhausted, limits
from tests.helpers import stop_process, wait_for
from tests.providers.fake_openai import Reply, completion, error
from tests.providers.gate_child import make_gate

PRODUCT = {"sku": "ABC123", "title": "Tênis de Corrida Leve", "brand": "Olympikus"}
FAST = {"retry-after-ms": "5"}
QUOTA = error(429, "You exceeded your current quota", code="insufficient_quota", headers=FAST)
# How late a request may reach the server after its start time (a loaded machine's thread
# scheduling) and still count in the right window: the limits leave this much to spare.
SLACK = 0.5


def provider(server_url, **kwargs):
    options = {"timeout": 5.0, "connect_timeout": 2.0, "max_attempts": 1}
    options.update(kwargs)
    return OpenAIProvider(base_url=server_url, api_key="sk-test", model="gpt-4o-mini", **options)


@pytest.fixture
def gate():
    """Install a gate with a short window for the test: ``gate(rpm=..., window=...)``."""

    def install(**options):
        chosen = make_gate(**options)
        limits.install(chosen)
        return chosen

    yield install
    limits.install(None)


def most_in_any_window(times: list[float], window: float) -> int:
    """The most of ``times`` inside one half-open window ``[t, t + window)``."""
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - window:
            first += 1
        most = max(most, last - first + 1)
    return most


def tokens_in_any_window(requests, window: float, tokens_each: int) -> int:
    return most_in_any_window([r.at for r in requests], window) * tokens_each


def attempt(generate) -> str:
    """``"ok"``, or the class name of the error ``generate()`` raised."""
    try:
        generate()
    except Exception as exc:  # the test counts outcomes by class
        return exc.__class__.__name__
    return "ok"


# --- the arithmetic (pure) ------------------------------------------------------------------------


@pytest.mark.parametrize("rpm, starts, expected", [
    (60, [], 0.0),  # nothing before: at once
    (60, [0.0], 1.0),  # (60 + 0) / 60 s after the previous start
    (120, [0.0, 0.5], 1.0),
])
def test_requests_are_paced_evenly_over_the_window(rpm, starts, expected):
    schedule = limits._Schedule(rpm=rpm, tpm=0, window=60.0, slack=0.0)
    next_start = 0.0
    for start in starts:
        next_start = schedule.plan(start, next_start, {}, 0).next_start
    assert schedule.plan(0.0, next_start, {}, 0).start == pytest.approx(expected)


def test_tokens_wait_until_enough_of_the_last_window_leaves_it():
    schedule = limits._Schedule(rpm=0, tpm=1000, window=60.0, slack=0.0)
    buckets = {0: 600, 10: 300}  # 600 tokens started in second 0, 300 in second 10
    assert schedule.plan(20.0, 0.0, buckets, 100).start == 20.0  # 900 + 100 fit
    # 900 + 500 do not: the 600 of second 0 must leave the window, at 61 s.
    assert schedule.plan(20.0, 0.0, buckets, 500).start == pytest.approx(61.0)
    # A request larger than the whole limit goes alone, once the window is empty.
    assert schedule.plan(20.0, 0.0, buckets, 5000).start == pytest.approx(71.0)


# --- the rate limit -------------------------------------------------------------------------------


def test_three_processes_together_never_start_more_than_the_limit_in_any_window(fake_openai, process_env,
                                                                                tmp_path):
    rpm, window = 6, 2.0
    options = json.dumps({"rpm": rpm, "window": window, "slack": SLACK})
    children = [
        subprocess.Popen([sys.executable, "-m", "tests.providers.gate_child", fake_openai.url, str(tmp_path),
                          options, "6", "3"], env=process_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for _ in range(3)
    ]
    try:
        assert wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == 3, 60, interval=0.05)
        (tmp_path / "go").touch()
        results = []
        for child in children:
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
            results.append(json.loads(out.splitlines()[-1]))
    finally:
        for child in children:
            stop_process(child)
    assert [r["outcomes"] for r in results] == [{"ok": 6}] * 3
    arrivals = [r.at for r in fake_openai.requests]
    assert len(arrivals) == 18
    # One limit for the three: alone, each would have sent its 6 at once.
    assert most_in_any_window(arrivals, window) <= rpm
    # And the three used it: 18 starts paced (2 + 0.5) / 6 s apart take about 7 s, not 3 windows of idling.
    assert max(arrivals) - min(arrivals) < 17 * (window + SLACK) / rpm + 2.0


def test_every_attempt_counts_the_sdks_retries_included(fake_openai, gate):
    gate(rpm=2, window=1.0, slack=SLACK)  # one start every 0.75 s
    fake_openai.script(error(503, headers=FAST))
    provider(fake_openai.url, max_attempts=2).generate(PRODUCT)  # a 503, then its retry (asked in 5 ms)
    provider(fake_openai.url).generate(PRODUCT)
    assert fake_openai.calls == 3
    assert all(gap >= 0.75 - SLACK for gap in fake_openai.gaps())


def test_a_request_that_would_wait_too_long_is_not_made(fake_openai, gate):
    gate(rpm=1, window=10.0, max_wait=0.5)
    provider(fake_openai.url).generate(PRODUCT)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable, match="próxima vaga sairia em 10 s, mais que LLM_RATE_MAX_WAIT = 0.5 s"):
        provider(fake_openai.url).generate(PRODUCT)
    assert time.monotonic() - started < 0.5  # known at once: no wait for nothing
    assert fake_openai.calls == 1


def test_a_variant_call_waits_for_its_place_under_the_same_limit(fake_openai, gate):
    """MEMORY_FAMILY_MODE=ask's short calls are chat completions too: the gate counts them."""
    gate(rpm=1, window=10.0, max_wait=0.5)
    provider(fake_openai.url).generate(PRODUCT)
    with pytest.raises(ProviderUnavailable, match="mais que LLM_RATE_MAX_WAIT = 0.5 s"):
        provider(fake_openai.url).generate_variant({"title": "Camiseta Básica", "bullet_points": ["Algodão"]},
                                                   [("cor", "Azul")])
    assert fake_openai.calls == 1


def test_tokens_per_window_are_reserved_then_corrected_to_the_usage_reported(fake_openai, gate):
    # Each answer reports 812 + 455 = 1267 tokens; each request reserves its size / 4 + 1000 first.
    fast = provider(fake_openai.url, max_tokens=1000)
    fast.generate(PRODUCT)  # no limit yet: how large is a request?
    reserved = -(-int(fake_openai.requests[0].headers["content-length"]) // 4) + 1000
    tpm = reserved + 1267 + 10  # one reservation fits beside one answer, not beside two, nor two reservations
    assert 2 * reserved > tpm
    window = 1.0
    gate(tpm=tpm, window=window, slack=SLACK)
    for _ in range(5):
        fast.generate(PRODUCT)
    requests = fake_openai.requests[1:]
    assert tokens_in_any_window(requests, window, 1267) <= tpm
    # The first answer's correction let the second start at once; the third waited for the window.
    assert requests[1].at - requests[0].at < 0.5
    assert requests[2].at - requests[0].at >= window


def test_without_redis_each_process_keeps_the_limit_by_itself(fake_openai, gate, no_redis):
    gate(rpm=3, window=1.0, slack=SLACK)
    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = list(pool.map(lambda _: attempt(lambda: provider(fake_openai.url).generate(PRODUCT)), range(6)))
    assert outcomes == ["ok"] * 6
    assert most_in_any_window([r.at for r in fake_openai.requests], 1.0) <= 3


def test_redis_going_down_mid_run_leaves_the_limit_to_the_process(fake_openai, gate, flaky_redis):
    gate(rpm=4, window=1.0, slack=SLACK)
    fast = provider(fake_openai.url)
    for _ in range(3):
        fast.generate(PRODUCT)
    flaky_redis.connected = False
    for _ in range(5):
        fast.generate(PRODUCT)  # no failure: the process's own copy of the limit goes on
    flaky_redis.connected = True
    fast.generate(PRODUCT)
    assert fake_openai.calls == 9
    assert most_in_any_window([r.at for r in fake_openai.requests], 1.0) <= 4


# --- the circuit breaker --------------------------------------------------------------------------


def test_quota_exhausted_opens_the_breaker_for_every_process(fake_openai, gate, process_env, tmp_path):
    gate(cooldown=60.0)
    fake_openai.script(then=QUOTA)
    with pytest.raises(QuotaExhausted):
        provider(fake_openai.url, max_attempts=3).generate(PRODUCT)
    with pytest.raises(CircuitOpen, match=r"aberto até \d\d:\d\d:\d\d \(cota do provedor esgotada"):
        provider(fake_openai.url).generate(PRODUCT)
    (tmp_path / "go").touch()
    child = subprocess.run([sys.executable, "-m", "tests.providers.gate_child", fake_openai.url, str(tmp_path),
                            json.dumps({"cooldown": 60.0}), "3", "1"],
                           env=process_env, capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout.splitlines()[-1])["outcomes"] == {"CircuitOpen": 3}
    assert fake_openai.calls == 1  # one call in all: none after it, in this process or another


def test_consecutive_429_or_5xx_answers_open_the_breaker(fake_openai, gate, caplog):
    gate(failures=5)
    fake_openai.script(then=error(503, headers=FAST))
    fast = provider(fake_openai.url, max_attempts=3)
    with caplog.at_level(logging.WARNING, logger="memory"):
        with pytest.raises(ProviderUnavailable, match="3 tentativas.*HTTP 503"):
            fast.generate(PRODUCT)
        # The 5th answer in a row opens it: the SDK does not retry into an open breaker.
        with pytest.raises(ProviderUnavailable, match="2 tentativas.*HTTP 503") as second:
            fast.generate(PRODUCT)
        assert not isinstance(second.value, CircuitOpen)
        with pytest.raises(CircuitOpen, match="5 respostas 429/5xx seguidas, a última HTTP 503"):
            fast.generate(PRODUCT)
    assert fake_openai.calls == 5
    assert "Disjuntor do provedor aberto por 60 s" in caplog.text


def test_an_answer_between_failures_starts_the_count_again(fake_openai, gate):
    gate(failures=3)
    fake_openai.script(error(429, headers=FAST), error(429, headers=FAST), Reply(),
                       error(429, headers=FAST), error(429, headers=FAST), Reply())
    fast = provider(fake_openai.url, max_attempts=3)
    fast.generate(PRODUCT)
    fast.generate(PRODUCT)
    assert fake_openai.calls == 6
    assert limits.gate().breaker.state()["state"] == "closed"


def test_after_the_cooldown_one_probe_closes_the_breaker(fake_openai, gate, caplog):
    gate(cooldown=0.3, probe_timeout=5.0)
    fake_openai.script(QUOTA, Reply(delay=0.5))
    fast = provider(fake_openai.url)
    with pytest.raises(QuotaExhausted):
        fast.generate(PRODUCT)
    assert limits.gate().breaker.state()["state"] == "open"
    assert wait_for(lambda: limits.gate().breaker.state()["state"] == "half_open", 5)
    with caplog.at_level(logging.INFO, logger="memory"):
        probe = threading.Thread(target=fast.generate, args=(PRODUCT,))
        probe.start()
        assert wait_for(lambda: fake_openai.calls == 2, 5)
        # While the probe is out, every other request waits for its answer.
        with pytest.raises(CircuitOpen, match="em teste"):
            fast.generate(PRODUCT)
        probe.join(10)
    assert limits.gate().breaker.state()["state"] == "closed"
    assert "Disjuntor do provedor fechado: a chamada de teste recebeu HTTP 200" in caplog.text
    fast.generate(PRODUCT)
    assert fake_openai.calls == 3


def test_a_failed_probe_opens_the_breaker_again(fake_openai, gate):
    gate(cooldown=0.3)
    fake_openai.script(QUOTA, error(503))
    fast = provider(fake_openai.url)
    with pytest.raises(QuotaExhausted):
        fast.generate(PRODUCT)
    assert wait_for(lambda: limits.gate().breaker.state()["state"] == "half_open", 5)
    with pytest.raises(ProviderUnavailable, match="HTTP 503"):
        fast.generate(PRODUCT)
    with pytest.raises(CircuitOpen, match="a chamada de teste recebeu HTTP 503"):
        fast.generate(PRODUCT)
    assert fake_openai.calls == 2


def test_a_200_product_run_with_the_quota_spent_makes_a_handful_of_calls(fake_openai, gate):
    gate(cooldown=60.0)
    fake_openai.script(then=Reply(status=429, delay=0.05, body=QUOTA.body, headers=FAST))
    fast = provider(fake_openai.url, max_attempts=3)
    products = [{**PRODUCT, "sku": f"SKU-{n}"} for n in range(200)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:  # LLM_MAX_CONCURRENCY's default
        outcomes = list(pool.map(lambda p: attempt(lambda: fast.generate(p)), products))
    assert fake_openai.calls <= 4  # at most the ones already in flight when the first answer came
    assert outcomes.count("QuotaExhausted") == fake_openai.calls
    assert outcomes.count("CircuitOpen") == 200 - fake_openai.calls
    assert time.monotonic() - started < 5


def test_without_redis_the_breaker_holds_in_the_process(fake_openai, gate, flaky_redis):
    gate(cooldown=60.0)
    flaky_redis.connected = False
    fake_openai.script(then=QUOTA)
    with pytest.raises(QuotaExhausted):
        provider(fake_openai.url).generate(PRODUCT)
    with pytest.raises(CircuitOpen):
        provider(fake_openai.url).generate(PRODUCT)
    assert fake_openai.calls == 1


def test_what_the_process_learnt_from_redis_holds_when_redis_goes(fake_openai, gate, flaky_redis):
    gate(cooldown=60.0)
    fake_openai.script(then=QUOTA)
    with pytest.raises(QuotaExhausted):
        provider(fake_openai.url).generate(PRODUCT)
    flaky_redis.connected = False
    with pytest.raises(CircuitOpen):
        provider(fake_openai.url).generate(PRODUCT)
    assert fake_openai.calls == 1


@pytest.mark.django_db  # a scrape also reads the purge's backlog from PostgreSQL
def test_the_breaker_state_is_a_metric(fake_openai, gate):
    gate(cooldown=60.0)
    assert "beecatalog_memory_llm_breaker_open 0.0" in metrics.render_latest()[0].decode()
    fake_openai.script(then=QUOTA)
    with pytest.raises(QuotaExhausted):
        provider(fake_openai.url).generate(PRODUCT)
    text = metrics.render_latest()[0].decode()
    assert "beecatalog_memory_llm_breaker_open 1.0" in text
    assert "beecatalog_memory_llm_requests_total" in text
