"""The one freshness rule, for one value and as a queryset filter."""
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest

from memory.engine import freshness
from memory.engine.freshness import ACTIVE, EXPIRED, STALE
from memory.engine.tiers import Snapshot
from memory.models import ProductMemoryEntry

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=dt_timezone.utc)
CURRENT = "template:template:p1"
OLD = "template:template:p0"


@pytest.mark.parametrize("expires_in, generator, fingerprint, wanted_fingerprint, expected", [
    (timedelta(hours=1), CURRENT, "f1", None, ACTIVE),
    (timedelta(hours=1), CURRENT, "f1", "f1", ACTIVE),
    (timedelta(hours=1), CURRENT, "f1", "f2", STALE),       # other product data than the request's
    (timedelta(hours=1), OLD, "f1", None, STALE),           # another generator
    (timedelta(0), CURRENT, "f1", None, EXPIRED),           # expires_at == now is expired
    (-timedelta(hours=1), OLD, "f1", "f2", EXPIRED),        # expiry wins over everything
])
def test_status_of_one_value(expires_in, generator, fingerprint, wanted_fingerprint, expected):
    assert freshness.status(NOW + expires_in, NOW, generator, CURRENT, fingerprint, wanted_fingerprint) == expected
    snap = Snapshot("A", "main_content", {}, fingerprint, generator, 0, 0, NOW.timestamp(),
                    (NOW + expires_in).timestamp())
    assert snap.status(wanted_fingerprint, CURRENT, NOW.timestamp()) == expected


@pytest.mark.parametrize("expires_in, generator, wanted_fingerprint, expected", [
    (timedelta(hours=1), CURRENT, None, ACTIVE),
    (timedelta(hours=1), OLD, None, STALE),            # approved and stale: still served
    (timedelta(hours=1), CURRENT, "f2", STALE),
    (-timedelta(days=400), CURRENT, None, ACTIVE),      # an approved entry never expires
    (-timedelta(days=400), OLD, "f2", STALE),
])
def test_an_approved_value_never_expires_and_is_served_whatever_its_status(
        expires_in, generator, wanted_fingerprint, expected):
    assert freshness.status(NOW + expires_in, NOW, generator, CURRENT, "f1", wanted_fingerprint,
                            approved=True) == expected
    snap = Snapshot("A", "main_content", {}, "f1", generator, 0, 0, NOW.timestamp(), (NOW + expires_in).timestamp(),
                    approved=True)
    assert snap.status(wanted_fingerprint, CURRENT, NOW.timestamp()) == expected
    assert snap.serves(wanted_fingerprint, CURRENT, NOW.timestamp())
    assert freshness.served(expected, approved=True) and freshness.served(ACTIVE, approved=False)
    assert not freshness.served(STALE, approved=False) and not freshness.served(EXPIRED, approved=False)


@pytest.mark.django_db
def test_approved_rows_in_the_queryset_form_never_expire_and_are_served():
    for product_id, (expires_in, generator, approved) in {
        "approved-expired": (-timedelta(days=1), CURRENT, True),
        "approved-old": (timedelta(days=1), OLD, True),
        "expired": (-timedelta(days=1), CURRENT, False),
        "soon-approved": (timedelta(days=3), CURRENT, True),
    }.items():
        ProductMemoryEntry.objects.create(product_id=product_id, payload={}, input_fingerprint="f",
                                          generator_version=generator, expires_at=NOW + expires_in, approved=approved)
    rows = ProductMemoryEntry.objects.all()

    def ids(q):
        return set(rows.filter(q).values_list("product_id", flat=True))

    assert ids(freshness.status_q(EXPIRED, CURRENT, NOW)) == {"expired"}
    assert ids(freshness.status_q(ACTIVE, CURRENT, NOW)) == {"approved-expired", "soon-approved"}
    assert ids(freshness.status_q(STALE, CURRENT, NOW)) == {"approved-old"}
    assert ids(freshness.served_q(CURRENT, NOW)) == {"approved-expired", "approved-old", "soon-approved"}
    assert ids(freshness.expiring_soon_q(NOW)) == set()
    assert {e.product_id: freshness.row_status(e, CURRENT, NOW) for e in rows} == {
        "approved-expired": ACTIVE, "approved-old": STALE, "expired": EXPIRED, "soon-approved": ACTIVE}


def test_a_copy_redis_took_before_approvals_existed_reads_as_not_approved():
    snap = Snapshot("A", "main_content", {"title": "t"}, "f1", CURRENT, 1, 2, NOW.timestamp(),
                    (NOW + timedelta(days=1)).timestamp())
    stored = snap.to_dict()
    assert Snapshot.from_stored(stored, snap.key) == snap
    del stored["approved"]
    assert Snapshot.from_stored(stored, snap.key) == snap
    with pytest.raises(ValueError, match="approved: deve ser booleano"):
        Snapshot.from_stored({**snap.to_dict(), "approved": "sim"}, snap.key)


def test_without_a_current_generator_nothing_is_stale_by_generator():
    assert freshness.status(NOW + timedelta(hours=1), NOW, OLD, None) == ACTIVE


@pytest.mark.django_db
def test_the_queryset_form_agrees_with_the_value_form_on_every_row():
    cases = {
        "active": (timedelta(days=1), CURRENT),
        "stale": (timedelta(days=1), OLD),
        "expired-current": (-timedelta(days=1), CURRENT),
        "expired-old": (-timedelta(seconds=1), OLD),
        "at-now": (timedelta(0), CURRENT),
        "soon": (timedelta(days=3), CURRENT),
        "later": (timedelta(days=30), OLD),
    }
    for product_id, (expires_in, generator) in cases.items():
        ProductMemoryEntry.objects.create(product_id=product_id, payload={}, input_fingerprint="f",
                                          generator_version=generator, expires_at=NOW + expires_in)
    rows = ProductMemoryEntry.objects.all()
    by_filter = {
        status: set(rows.filter(freshness.status_q(status, CURRENT, NOW)).values_list("product_id", flat=True))
        for status in (ACTIVE, EXPIRED, STALE)
    }
    by_value = {status: {e.product_id for e in rows if freshness.row_status(e, CURRENT, NOW) == status}
                for status in (ACTIVE, EXPIRED, STALE)}
    assert by_filter == by_value
    assert by_value == {
        ACTIVE: {"active", "soon"}, STALE: {"stale", "later"}, EXPIRED: {"expired-current", "expired-old", "at-now"},
    }
    assert freshness.status_counts(rows, CURRENT, NOW) == {"total": 7, ACTIVE: 2, EXPIRED: 3, STALE: 2}
    soon = set(rows.filter(freshness.expiring_soon_q(NOW)).values_list("product_id", flat=True))
    assert soon == {"active", "stale", "soon"}
