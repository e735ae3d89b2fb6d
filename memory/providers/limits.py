"""One rate limit and one circuit breaker for every process that calls the LLM provider.

Both live in Redis, so that the web workers and every Celery worker share them, and in the
process too: while Redis is absent or down each process goes on by itself from what it last
knew (the deployment may then reach one limit per process).

**Rate limit** (:class:`RateLimiter`). ``rpm`` requests a window are held by pacing: each
request takes the next start time, ``(window + slack) / rpm`` after the one before (GCRA
without burst), in one atomic step, then sleeps until it. Starts that far apart never put more
than ``rpm`` in any window, even when a request leaves up to ``slack`` seconds late, and they
come evenly (providers enforce a minute's limit over shorter periods too). ``tpm`` tokens a
window: a request reserves an estimate of its tokens in the bucket (``window / 60`` wide) of its
start, and starts only when the buckets of the last ``window + slack`` leave room for it; the
reservation is corrected to the usage the answer reports. A request whose start would be more
than ``max_wait`` away is not made (``ProviderUnavailable``).

**Circuit breaker** (:class:`CircuitBreaker`). An account out of quota, or ``failures`` 429/5xx
answers in a row, open it for ``cooldown`` seconds: every request is refused before it is sent
(``CircuitOpen``, saying until when). After the cooldown one request, the probe, goes through
(half-open): an answer other than 429/5xx closes the breaker, a 429/5xx opens it again; a probe
that got no answer lets the next request probe.

**The gate** (:class:`Gate`) puts both around each HTTP request (the provider's client calls it
for every attempt, the SDK's retries included): :meth:`Gate.enter` before it is sent (refused,
or waits for its place), :meth:`Gate.leave` with what came back. :func:`gate` is the process's,
built from the settings; :func:`install` puts another in its place (tests, with short windows),
:func:`reset` forgets every process state.

Redis is reached only through :mod:`memory.infra.redis`; its values are not trusted: what does
not parse is taken as nothing (no reservation, breaker closed).
"""
from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone

from django.conf import settings
from django.utils import timezone

from memory.infra import metrics, redis
from memory.providers.base import CircuitOpen, ProviderUnavailable

logger = logging.getLogger("memory")

WINDOW = 60.0  # seconds: LLM_RPM and LLM_TPM are per minute
BUCKETS_PER_WINDOW = 60
# How long an opened breaker's record outlives its cooldown without a probe: then it is closed.
FORGOTTEN_AFTER = 3600.0

_DOWN = object()  # what redis.run answers when Redis could not be asked


def _number(raw, default: float = 0.0) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


# --- the rate limit ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    start: float  # when the request may start, in the clock of the store that planned it
    next_start: float  # the earliest start of the request after it
    bucket: int  # the token bucket of its start
    tokens: int  # reserved there
    stale: tuple  # buckets out of every window from now on


@dataclass
class Slot:
    """A request's place under the limit: how long it waits before it starts, and the tokens it reserved."""

    wait: float = 0.0
    tokens: int = 0
    bucket: int | None = None  # in Redis (None: reserved in this process only)
    local_bucket: int | None = None
    expires: float = 0.0  # time.monotonic() after which its bucket left every window


class _Schedule:
    """The pacing and the token window over one store's state: pure arithmetic."""

    def __init__(self, *, rpm: int, tpm: int, window: float, slack: float):
        self.rpm, self.tpm = rpm, tpm
        self.span = window + slack  # a start counts against the limits for this long
        self.interval = self.span / rpm if rpm else 0.0
        self.width = window / BUCKETS_PER_WINDOW

    def plan(self, now: float, next_start: float, buckets: dict, tokens: int) -> _Plan:
        """The earliest start at or after ``now`` for a request of ``tokens``."""
        start = max(now, next_start)
        if self.tpm:
            tokens = min(tokens, self.tpm)  # one larger than the whole limit goes alone
            live = sorted((b, max(0, n)) for b, n in buckets.items() if (b + 1) * self.width > start - self.span)
            used = sum(n for _, n in live)
            for bucket, spent in live:  # oldest first: wait until enough of them leave the window
                if used + tokens <= self.tpm:
                    break
                used -= spent
                start = max(start, (bucket + 1) * self.width + self.span)
        else:
            tokens = 0
        stale = tuple(b for b in buckets if (b + 1) * self.width <= now - self.span)
        return _Plan(start, start + self.interval, int(start // self.width), tokens, stale)


class _LocalSchedule:
    """This process's copy of the limit's state: what it reserved, in its own clock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.next_start = 0.0
        self.buckets: dict[int, int] = {}

    def plan(self, schedule: _Schedule, now: float, tokens: int) -> _Plan:
        with self.lock:
            return schedule.plan(now, self.next_start, dict(self.buckets), tokens)

    def commit(self, plan: _Plan) -> None:
        with self.lock:
            self.next_start = max(self.next_start, plan.next_start)
            for bucket in plan.stale:
                self.buckets.pop(bucket, None)
            if plan.tokens:
                self.buckets[plan.bucket] = self.buckets.get(plan.bucket, 0) + plan.tokens

    def record(self, schedule: _Schedule, now: float, start: float, tokens: int) -> int:
        """A start another store planned, at ``start`` in this clock; its bucket here."""
        bucket = int(start // schedule.width)
        with self.lock:
            stale = tuple(b for b in self.buckets if (b + 1) * schedule.width <= now - schedule.span)
        self.commit(_Plan(start, start + schedule.interval, bucket, tokens, stale))
        return bucket

    def adjust(self, bucket: int, delta: int) -> None:
        with self.lock:
            if bucket in self.buckets:
                self.buckets[bucket] += delta


class RateLimiter:
    """``rpm`` requests and ``tpm`` tokens that may start in any ``window`` seconds (0: no limit),
    for every process sharing the Redis; a request waits at most ``max_wait`` for its place."""

    def __init__(self, *, rpm: int, tpm: int, max_wait: float, window: float = WINDOW,
                 slack: float | None = None, name: str = "llm:rate"):
        self.rpm, self.tpm, self.max_wait, self.window = rpm, tpm, max_wait, window
        # A request may leave up to this late after its start time (thread scheduling, the
        # way to the provider) without two of them landing closer than the limit allows.
        self.slack = window / 120 if slack is None else slack
        self.schedule = _Schedule(rpm=rpm, tpm=tpm, window=window, slack=self.slack)
        self.name = name
        self._turn = threading.Lock()  # one reservation at a time from this process
        self._local = _LocalSchedule()

    @property
    def limited(self) -> bool:
        return bool(self.rpm or self.tpm)

    def describe(self) -> str:
        return f"LLM_RPM = {self.rpm or 'sem limite'}, LLM_TPM = {self.tpm or 'sem limite'}"

    def reserve(self, tokens: int) -> Slot:
        """The place of a request of about ``tokens`` tokens: how long it must wait to start.

        ``ProviderUnavailable`` (nothing reserved) when that is more than ``max_wait``."""
        if not self.limited:
            return Slot()
        tokens = max(0, int(tokens))
        started = time.monotonic()
        # The turn is held for one Redis transaction (each call bounded by MEMORY_REDIS_TIMEOUT).
        if not self._turn.acquire(timeout=max(1.0, self.max_wait)):
            raise self._too_long(self.max_wait)
        try:
            limit = self.max_wait - (time.monotonic() - started)
            own_next = self._local.next_start  # this process's last start counts too (made while Redis was down)
            found = redis.run(lambda: self._reserve_shared(tokens, limit, own_next), _DOWN)
            now = time.time()
            if found is _DOWN:  # Redis absent or down: this process's own limit
                plan = self._local.plan(self.schedule, now, tokens)
                if plan.start - now > limit:
                    raise self._too_long(plan.start - now)
                self._local.commit(plan)
                return self._slot(plan.start - now, plan.tokens, None, plan.bucket)
            plan, shared_now, reserved = found
            wait = plan.start - shared_now
            if not reserved:
                raise self._too_long(wait)
            # This process's copy, in its own clock, for when Redis goes away.
            local_bucket = self._local.record(self.schedule, now, now + wait, plan.tokens)
            return self._slot(wait, plan.tokens, plan.bucket, local_bucket)
        finally:
            self._turn.release()

    def _key(self, part: str) -> str:
        # The name is a hash tag: the transaction takes both keys, which a cluster runs in one slot.
        return redis.make_key(f"{{{self.name}}}:{part}")

    def _slot(self, wait: float, tokens: int, bucket: int | None, local_bucket: int) -> Slot:
        expires = time.monotonic() + wait + self.schedule.span + self.schedule.width
        return Slot(wait=max(0.0, wait), tokens=tokens, bucket=bucket, local_bucket=local_bucket, expires=expires)

    def _reserve_shared(self, tokens: int, limit: float, own_next: float):
        next_key, tokens_key = self._key("next"), self._key("tokens")

        def step(pipe):
            seconds, micros = pipe.time()
            now = seconds + micros / 1_000_000
            next_start = max(_number(pipe.get(next_key)), own_next - time.time() + now)
            buckets, unreadable = {}, []
            if self.tpm:
                for bucket, spent in pipe.hgetall(tokens_key).items():
                    try:
                        buckets[int(bucket)] = int(spent)
                    except ValueError:
                        unreadable.append(bucket)
            plan = self.schedule.plan(now, next_start, buckets, tokens)
            if plan.start - now > limit:
                return (plan, now, False), None

            def write(pipe):
                pipe.set(next_key, repr(plan.next_start), px=_ms(plan.next_start - now + self.schedule.span))
                if self.tpm:
                    if plan.stale or unreadable:
                        pipe.hdel(tokens_key, *plan.stale, *unreadable)
                    if plan.tokens:
                        pipe.hincrby(tokens_key, plan.bucket, plan.tokens)
                    pipe.pexpire(tokens_key, _ms(plan.start - now + self.schedule.span + self.schedule.width))

            return (plan, now, True), write

        return redis.transaction([next_key, tokens_key], step)

    def settle(self, slot: Slot, used_tokens: int) -> None:
        """Correct ``slot``'s reservation to the ``used_tokens`` its request really used."""
        delta = int(used_tokens) - slot.tokens
        if not self.tpm or delta == 0 or time.monotonic() >= slot.expires:
            return
        slot.tokens += delta
        if slot.bucket is not None:
            tokens_key = self._key("tokens")
            redis.run(lambda: redis.client().hincrby(tokens_key, slot.bucket, delta))
        if slot.local_bucket is not None:
            self._local.adjust(slot.local_bucket, delta)

    def release(self, slot: Slot) -> None:
        """``slot``'s request was not made: its tokens go back (its start time does not)."""
        self.settle(slot, 0)

    def _too_long(self, wait: float) -> ProviderUnavailable:
        return ProviderUnavailable(
            f"Limite de chamadas ao provedor ({self.describe()}): a próxima vaga sairia em {wait:.0f} s,"
            f" mais que LLM_RATE_MAX_WAIT = {self.max_wait:g} s; nenhuma chamada feita")

    def forget_local(self) -> None:
        """A new process's state (after a fork: the parent's locks may be held)."""
        self._turn = threading.Lock()
        self._local = _LocalSchedule()


# --- the circuit breaker -----------------------------------------------------------------------

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

# What became of a request, for the breaker.
ANSWERED = "answered"  # any answer but a 429 or a 5xx
FAILED = "failed"  # 429 or 5xx
OUT_OF_QUOTA = "out_of_quota"  # 429 insufficient_quota
NO_ANSWER = "no_answer"  # timeout, connection error: says nothing about the account


@dataclass
class Ticket:
    """The breaker's leave for one request; ``probe`` is its claim when it tests a half-open breaker."""

    probe: str | None = None


def _clock(epoch: float) -> str:
    """An instant as a person reads it here: HH:MM:SS in ``TIME_ZONE``."""
    return timezone.localtime(datetime.fromtimestamp(epoch, dt_timezone.utc)).strftime("%H:%M:%S")


class _LocalBreaker:
    """This process's copy of the breaker's state."""

    def __init__(self):
        self.lock = threading.Lock()
        self.opened: tuple[float, str] | None = None
        self.failures = 0
        self.probe: tuple[str, float] | None = None  # (claim, time.monotonic() it lapses)


class CircuitBreaker:
    """Stops requests to the provider for ``cooldown`` seconds after an account out of quota or
    ``failures`` 429/5xx answers in a row, in every process sharing the Redis; a probe then
    tests the provider (it may take ``probe_timeout`` seconds before another may)."""

    def __init__(self, *, failures: int, cooldown: float, probe_timeout: float, name: str = "llm:breaker"):
        self.failures, self.cooldown, self.probe_timeout = failures, cooldown, probe_timeout
        self.name = name
        self._local = _LocalBreaker()

    def _key(self, part: str) -> str:
        # The name is a hash tag: a transaction takes two of the keys, which a cluster runs in one slot.
        return redis.make_key(f"{{{self.name}}}:{part}")

    # What the breaker knows, from Redis (mirrored in the process) or, without it, the process.

    def _opened(self) -> tuple[float, str] | None:
        raw = redis.run(lambda: redis.client().get(self._key("open")), _DOWN)
        if raw is _DOWN:
            return self._local.opened
        found = None
        if raw is not None:
            try:
                value = json.loads(raw)
                found = (float(value["until"]), str(value["reason"])[:300])
            except (ValueError, TypeError, KeyError):
                found = None  # not written by the breaker: taken as closed
        self._local.opened = found
        return found

    def _open(self, until: float, reason: str, *, replace: bool) -> bool:
        """Open until ``until`` (unless already open, or ``replace``); did this call open it?"""
        value = json.dumps({"until": until, "reason": reason}, ensure_ascii=False)
        ttl = _ms(until - time.time() + FORGOTTEN_AFTER)

        def write():
            pipe = redis.client().pipeline(transaction=True)
            pipe.set(self._key("open"), value, px=ttl, nx=not replace)
            pipe.delete(self._key("failures"))
            return bool(pipe.execute()[0])

        done = redis.run(write, _DOWN)
        with self._local.lock:
            if done is _DOWN:
                done = replace or self._local.opened is None
            if done:
                self._local.opened = (until, reason)
            self._local.failures = 0
        return done

    def _close(self) -> None:
        redis.run(lambda: redis.client().delete(self._key("open"), self._key("failures"), self._key("probe")))
        with self._local.lock:
            self._local.opened, self._local.failures, self._local.probe = None, 0, None

    def _failed_once_more(self) -> int:
        def count():
            pipe = redis.client().pipeline(transaction=True)
            pipe.incr(self._key("failures"))
            pipe.pexpire(self._key("failures"), _ms(FORGOTTEN_AFTER))
            return int(pipe.execute()[0])

        found = redis.run(count, _DOWN)
        with self._local.lock:
            self._local.failures = self._local.failures + 1 if found is _DOWN else found
            return self._local.failures

    def _answered(self) -> None:
        redis.run(lambda: redis.client().delete(self._key("failures")))
        with self._local.lock:
            self._local.failures = 0

    def _claim_probe(self, claim: str) -> bool:
        found = redis.run(lambda: redis.client().set(self._key("probe"), claim, nx=True,
                                                     px=_ms(self.probe_timeout)), _DOWN)
        with self._local.lock:
            if found is _DOWN:
                held = self._local.probe
                found = held is None or held[1] <= time.monotonic()
            if found:
                self._local.probe = (claim, time.monotonic() + self.probe_timeout)
            return bool(found)

    def _drop_probe(self, claim: str) -> None:
        """Give up the probe's claim, if ``claim`` still holds it."""

        def drop():
            key = self._key("probe")

            def step(pipe):
                held = pipe.get(key) == claim.encode()
                return held, (lambda pipe: pipe.delete(key)) if held else None

            return redis.transaction([key], step)

        redis.run(drop)
        with self._local.lock:
            if self._local.probe and self._local.probe[0] == claim:
                self._local.probe = None

    # What callers ask.

    def admit(self) -> Ticket:
        """Leave for one request; ``CircuitOpen`` (saying until when) while the breaker stops them."""
        opened = self._opened()
        if opened is None:
            metrics.set_llm_breaker_open(False)
            return Ticket()
        metrics.set_llm_breaker_open(True)
        until, reason = opened
        if time.time() < until:
            raise CircuitOpen(f"Disjuntor do provedor aberto até {_clock(until)} ({reason});"
                              f" nenhuma chamada feita")
        claim = uuid.uuid4().hex
        if self._claim_probe(claim):
            logger.info("Disjuntor do provedor: pausa encerrada às %s; uma chamada testa o provedor", _clock(until))
            return Ticket(probe=claim)
        raise CircuitOpen(f"Disjuntor do provedor em teste desde {_clock(until)} ({reason}): as chamadas esperam"
                          f" a resposta da chamada de teste; nenhuma chamada feita")

    def abandon(self, ticket: Ticket) -> None:
        """``ticket``'s request was not made."""
        if ticket.probe:
            self._drop_probe(ticket.probe)

    def record(self, ticket: Ticket, outcome: str, detail: str = "") -> None:
        """What ``ticket``'s request got (``ANSWERED``, ``FAILED``, ``OUT_OF_QUOTA``, ``NO_ANSWER``)."""
        if outcome == OUT_OF_QUOTA:
            self._stop(f"cota do provedor esgotada: {detail}", ticket)
        elif outcome == FAILED:
            count = self._failed_once_more()
            if ticket.probe:
                self._stop(f"a chamada de teste recebeu {detail}", ticket)
            elif count >= self.failures:
                self._stop(f"{count} respostas 429/5xx seguidas, a última {detail}", ticket)
        elif outcome == ANSWERED:
            if ticket.probe:
                self._close()
                metrics.set_llm_breaker_open(False)
                logger.warning("Disjuntor do provedor fechado: a chamada de teste recebeu %s; chamadas retomadas",
                               detail)
            else:
                self._answered()
        elif ticket.probe:  # no answer: the next request tests the provider instead
            self._drop_probe(ticket.probe)

    def _stop(self, reason: str, ticket: Ticket) -> None:
        until = time.time() + self.cooldown
        if self._open(until, reason, replace=bool(ticket.probe)):
            metrics.count_llm_breaker_opened()
            metrics.set_llm_breaker_open(True)
            logger.warning("Disjuntor do provedor aberto por %g s, até %s (%s): nenhuma chamada até lá",
                           self.cooldown, _clock(until), reason)
        if ticket.probe:
            self._drop_probe(ticket.probe)

    def stopped(self) -> bool:
        """Is the breaker stopping requests now (open, or half-open)?"""
        return self._opened() is not None

    def state(self) -> dict:
        """``{"state": closed|open|half_open, "until": ISO 8601 or None, "reason": ...}``."""
        opened = self._opened()
        if opened is None:
            return {"state": CLOSED, "until": None, "reason": None}
        until, reason = opened
        return {"state": OPEN if time.time() < until else HALF_OPEN,
                "until": datetime.fromtimestamp(until, dt_timezone.utc).isoformat(), "reason": reason}

    def forget_local(self) -> None:
        self._local = _LocalBreaker()


# --- the gate around each request -------------------------------------------------------------


@dataclass
class Pass:
    """A request the gate let through: its place under the limit and its breaker leave."""

    slot: Slot
    ticket: Ticket


class Gate:
    """The rate limit and the breaker around each HTTP request to the provider."""

    def __init__(self, limiter: RateLimiter, breaker: CircuitBreaker):
        self.limiter = limiter
        self.breaker = breaker

    def enter(self, tokens: int) -> Pass:
        """Before a request of about ``tokens`` tokens is sent: ``CircuitOpen`` while the breaker is
        open, ``ProviderUnavailable`` when its place is more than ``max_wait`` away; otherwise waits
        until its place comes."""
        ticket = self.breaker.admit()
        try:
            slot = self.limiter.reserve(tokens)
        except BaseException:
            self.breaker.abandon(ticket)
            raise
        if slot.wait > 0:
            time.sleep(slot.wait)
            if not ticket.probe:  # the breaker may have opened meanwhile
                try:
                    ticket = self.breaker.admit()
                except CircuitOpen:
                    self.limiter.release(slot)
                    raise
        metrics.observe_rate_limit_wait(slot.wait)
        metrics.count_llm_request()
        return Pass(slot, ticket)

    def leave(self, passed: Pass, *, status: int | None, out_of_quota: bool = False,
              used_tokens: int | None = None) -> None:
        """After the request: its HTTP ``status`` (None: no answer), whether it said the account is
        out of quota, and the tokens the answer reports using (None: keep the estimate)."""
        if used_tokens is not None:
            self.limiter.settle(passed.slot, used_tokens)
        if status is None:
            outcome = NO_ANSWER
        elif out_of_quota:
            outcome = OUT_OF_QUOTA
        elif status == 429 or status >= 500:
            outcome = FAILED
        else:
            outcome = ANSWERED
        self.breaker.record(passed.ticket, outcome, f"HTTP {status}" if status else "")

    def stopped(self) -> bool:
        """Would the breaker refuse a request now? (The SDK asks before a retry.)"""
        return self.breaker.stopped()

    def forget_local(self) -> None:
        self.limiter.forget_local()
        self.breaker.forget_local()


def from_settings() -> Gate:
    """A gate with the limits of the settings (``LLM_RPM``, ``LLM_TPM``, ``LLM_RATE_MAX_WAIT``,
    ``LLM_BREAKER_FAILURES``, ``LLM_BREAKER_COOLDOWN``)."""
    return Gate(
        RateLimiter(rpm=settings.LLM_RPM, tpm=settings.LLM_TPM, max_wait=settings.LLM_RATE_MAX_WAIT),
        CircuitBreaker(failures=settings.LLM_BREAKER_FAILURES, cooldown=settings.LLM_BREAKER_COOLDOWN,
                       # one request: connect, answer, and a margin
                       probe_timeout=settings.LLM_CONNECT_TIMEOUT + settings.LLM_TIMEOUT + 5),
    )


_lock = threading.Lock()
_gates: dict[tuple, Gate] = {}
_installed: list[Gate] = []


def gate() -> Gate:
    """The process's gate: the one :func:`install` put, else the settings' (one per value of them)."""
    if _installed:
        return _installed[0]
    key = (settings.LLM_RPM, settings.LLM_TPM, settings.LLM_RATE_MAX_WAIT, settings.LLM_BREAKER_FAILURES,
           settings.LLM_BREAKER_COOLDOWN, settings.LLM_CONNECT_TIMEOUT, settings.LLM_TIMEOUT)
    with _lock:
        found = _gates.get(key)
        if found is None:
            found = _gates[key] = from_settings()
    return found


def install(chosen: Gate | None) -> None:
    """Use ``chosen`` instead of the settings' gate (None: the settings' again)."""
    with _lock:
        _installed[:] = [chosen] if chosen is not None else []


def reset() -> None:
    """Forget every gate and what this process knew of the limit and the breaker (tests)."""
    with _lock:
        _installed.clear()
        _gates.clear()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    _gates.clear()
    for chosen in _installed:
        chosen.forget_local()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _report_breaker() -> None:
    metrics.set_llm_breaker_open(gate().breaker.stopped())


metrics.on_scrape(_report_breaker)
