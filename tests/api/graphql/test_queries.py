"""The queries of /api/graphql/: entries (filters, ordering, cursor pages), entry with its versions,
stats and dailyStats, answering what the REST API and the services answer."""
from datetime import timedelta

import pytest
from django.utils import timezone

from memory.models import ProductMemoryEntry
from memory.providers.prompts import current_generator_version
from memory.services.versions import edit_content
from tests.helpers import CONTENT, make_entries, seed

pytestmark = pytest.mark.django_db

PAGE = """query Page($first: Int, $after: String, $last: Int, $before: String, $ordering: EntryOrdering!,
                    $kind: String, $status: EntryStatus, $search: String, $expiringBefore: DateTime,
                    $minHits: BigInt) {
  entries(first: $first, after: $after, last: $last, before: $before, ordering: $ordering, kind: $kind,
          status: $status, search: $search, expiringBefore: $expiringBefore, minHits: $minHits) {
    totalCount
    edges { cursor node { productId kind title status hitCount expiresAt } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


def page(gql, **variables):
    variables.setdefault("ordering", "PRODUCT_ID_ASC")
    return gql(PAGE, variables).ok()["entries"]


def ids(found) -> list[str]:
    return [edge["node"]["productId"] for edge in found["edges"]]


@pytest.fixture
def statuses():
    """Three entries of each status, judged as the freshness rule judges a row on its own."""
    current = current_generator_version()
    now = timezone.now()
    make_entries(3, prefix="ACT", generator_version=current, expires_at=now + timedelta(days=5))
    make_entries(3, prefix="EXP", generator_version=current, expires_at=now - timedelta(seconds=1))
    make_entries(3, prefix="STA", generator_version="outro:gerador:v0", expires_at=now + timedelta(days=5))
    # Approved and past its expiry: never expired, so stale (another generator) and not "expiring".
    make_entries(1, prefix="APR", generator_version="outro:gerador:v0", approved=True,
                 expires_at=now - timedelta(days=1))


@pytest.mark.parametrize("status, prefixes", [
    ("ACTIVE", {"ACT"}), ("EXPIRED", {"EXP"}), ("STALE", {"STA", "APR"}),
])
def test_status_filter_is_the_freshness_rule(gql, statuses, status, prefixes):
    found = page(gql, status=status, first=100)
    assert {pid[:3] for pid in ids(found)} == prefixes
    assert all(edge["node"]["status"] == status for edge in found["edges"])
    assert found["totalCount"] == sum(3 if p != "APR" else 1 for p in prefixes)


def test_kind_filter(gql):
    make_entries(2, prefix="MAIN")
    make_entries(2, prefix="FAM", kind="family")
    assert ids(page(gql, kind="family", first=10)) == ["FAM00000", "FAM00001"]


def test_search_matches_product_id_or_title_in_any_case(gql):
    seed({"sku": "XYZ-1", "title": "Caneca"}, {**CONTENT, "title": "Caneca Térmica Inox"})
    seed({"sku": "ABC-2", "title": "Tênis"}, {**CONTENT, "title": "Tênis de Corrida"})
    assert ids(page(gql, search="xyz", first=10)) == ["XYZ-1"]
    assert ids(page(gql, search="CORRIDA", first=10)) == ["ABC-2"]
    assert ids(page(gql, search="nada disso", first=10)) == []


def test_expiring_before_leaves_out_approved_entries(gql, statuses):
    before = (timezone.now() + timedelta(days=1)).isoformat()
    assert {pid[:3] for pid in ids(page(gql, expiringBefore=before, first=100))} == {"EXP"}


def test_min_hits(gql):
    make_entries(5)  # hit_count 0, 3, 6, 9, 12
    assert ids(page(gql, minHits=6, first=10)) == ["SKU00002", "SKU00003", "SKU00004"]


def test_orderings(gql):
    make_entries(4)
    ProductMemoryEntry.objects.filter(product_id="SKU00001").update(hit_count=100)
    assert ids(page(gql, ordering="HITS_DESC", first=10)) == ["SKU00001", "SKU00003", "SKU00002", "SKU00000"]
    assert ids(page(gql, ordering="PRODUCT_ID_ASC", first=10)) == ["SKU00000", "SKU00001", "SKU00002", "SKU00003"]
    assert ids(page(gql, ordering="UPDATED_DESC", first=10)) == ["SKU00003", "SKU00002", "SKU00001", "SKU00000"]


@pytest.mark.parametrize("ordering", ["PRODUCT_ID_ASC", "HITS_DESC", "UPDATED_DESC", "EXPIRES_ASC", "CREATED_DESC"])
def test_cursor_pages_walk_every_entry_once_forwards_and_backwards(gql, ordering):
    make_entries(7)
    ProductMemoryEntry.objects.filter(product_id__in=["SKU00002", "SKU00005"]).update(hit_count=3)  # ties
    whole = ids(page(gql, ordering=ordering, first=100))
    seen, after, pages = [], None, 0
    while True:
        found = page(gql, ordering=ordering, first=3, after=after)
        seen += ids(found)
        pages += 1
        if not found["pageInfo"]["hasNextPage"]:
            break
        after = found["pageInfo"]["endCursor"]
    assert seen == whole and len(seen) == 7 and pages == 3
    back = page(gql, ordering=ordering, last=3, before=page(gql, ordering=ordering, first=100)["edges"][4]["cursor"])
    assert ids(back) == whole[1:4] and back["pageInfo"]["hasPreviousPage"]


def test_a_cursor_stays_in_place_when_entries_are_added_before_it(gql):
    make_entries(4)
    first = page(gql, first=2)
    make_entries(2, prefix="AAA")  # sort before every SKU
    assert ids(page(gql, first=2, after=first["pageInfo"]["endCursor"])) == ["SKU00002", "SKU00003"]


@pytest.mark.parametrize("cursor", ["zzz", "bm90IGEgY3Vyc29y", "b3JkZXJlZGN1cnNvcjpbIngiXQ==", "b3JkZXJlZGN1cnNvcjp7fQ=="])
def test_a_bad_cursor_is_a_pt_br_error_naming_the_argument(gql, cursor):
    make_entries(2)
    answer = gql(PAGE, {"ordering": "PRODUCT_ID_ASC", "first": 1, "after": cursor})
    assert answer.status == 200 and answer.codes == ["BAD_USER_INPUT"]
    assert "ursor inválido" in answer.messages[0]


def test_a_page_over_100_is_refused_in_pt_br(gql):
    answer = gql(PAGE, {"ordering": "PRODUCT_ID_ASC", "first": 101})
    assert answer.messages == ["O argumento 'first' vai até 100."]


def test_bad_filters_name_the_argument(gql):
    answer = gql(PAGE, {"ordering": "PRODUCT_ID_ASC", "first": 1, "minHits": -1})
    assert answer.errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "minHits"}
    assert answer.messages[0].startswith("minHits: não pode ser negativo")
    answer = gql(PAGE, {"ordering": "PRODUCT_ID_ASC", "first": 1, "expiringBefore": "2026-12-01T10:00:00"})
    assert answer.errors[0]["extensions"]["field"] == "expiringBefore"
    answer = gql(PAGE, {"ordering": "NOPE"})
    assert answer.messages == ["A variável '$ordering' tem um valor inválido: "
                               "O valor 'NOPE' não existe no enum 'EntryOrdering'."]


ENTRY = """query One($productId: String!, $kind: String!) {
  entry(productId: $productId, kind: $kind) {
    productId kind title content version origin author approved status tokensSpent
    versions { number origin author content tokens createdAt }
  }
}"""


def test_entry_has_its_content_and_its_versions_newest_first(gql):
    seed()
    edit_content("ABC123", {**CONTENT, "title": "Título editado"}, author="maria")
    found = gql(ENTRY, {"productId": "ABC123", "kind": "main_content"}).ok()["entry"]
    assert found["content"]["title"] == "Título editado" and found["version"] == 2
    assert found["origin"] == "EDITED" and found["author"] == "maria" and found["tokensSpent"] == 1500
    assert [(v["number"], v["origin"], v["author"]) for v in found["versions"]] == [
        (2, "EDITED", "maria"), (1, "GENERATED", "")]
    assert found["versions"][1]["content"] == CONTENT and found["versions"][1]["tokens"] == 1500


def test_entry_of_an_unknown_product_or_kind_is_null(gql):
    seed()
    assert gql(ENTRY, {"productId": "NOPE", "kind": "main_content"}).ok() == {"entry": None}
    assert gql(ENTRY, {"productId": "ABC123", "kind": "family"}).ok() == {"entry": None}


def test_entry_with_an_empty_product_id_is_refused(gql):
    answer = gql(ENTRY, {"productId": "  ", "kind": "main_content"})
    assert answer.errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "productId"}


STATS = """{ stats { totalEntries activeEntries expiredEntries staleEntries approvedEntries generatedEntries
  editedEntries importedEntries restoredEntries hits misses hitRate generations tokensSpent tokensSaved
  tokensWasted tokensSavedByFamily estimatedCostSaved currency generatorVersion
  redis { available usedMemoryBytes keys } database { vendor tableBytes } backupDir { path bytes } } }"""


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def test_stats_are_the_rest_stats(gql, api):
    seed()
    make_entries(3, expires_at=timezone.now() - timedelta(seconds=1))
    graph = gql(STATS).ok()["stats"]
    rest = api.get("/api/memory/stats/").json()
    for name in ("total_entries", "active_entries", "expired_entries", "stale_entries", "approved_entries",
                 "generated_entries", "hits", "misses", "hit_rate", "tokens_spent", "tokens_saved",
                 "estimated_cost_saved", "generator_version"):
        assert graph[camel(name)] == rest[name], name
    assert graph["totalEntries"] == 4 and graph["expiredEntries"] == 3
    assert graph["redis"]["available"] is True and graph["database"]["vendor"] == "postgresql"


def test_daily_stats_one_item_per_day_oldest_first(gql):
    days = gql("{ dailyStats(days: 7) { date hits misses generations tokensSaved } }").ok()["dailyStats"]
    assert len(days) == 7
    assert days[-1]["date"] == timezone.localdate().isoformat()
    assert days[0]["date"] == (timezone.localdate() - timedelta(days=6)).isoformat()


@pytest.mark.parametrize("days", [0, 367])
def test_daily_stats_days_out_of_range(gql, days):
    answer = gql("query D($d: Int!) { dailyStats(days: $d) { date } }", {"d": days})
    assert answer.errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "days"}


def test_big_counts_pass_the_32_bit_int(gql):
    make_entries(1, hit_count=5_000_000_000, tokens_saved=9_000_000_000)
    node = gql("{ entries(first: 1) { edges { node { hitCount tokensSaved } } } }").ok()["entries"]["edges"][0]["node"]
    assert node == {"hitCount": 5_000_000_000, "tokensSaved": 9_000_000_000}


def test_postgresql_down_is_a_service_unavailable_error_not_a_500(gql, monkeypatch):
    from django.db import OperationalError

    from memory.api.graphql import schema

    def down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(schema, "select_entries", down)
    answer = gql("{ entries(first: 1) { edges { node { productId } } } }")
    assert answer.status == 200 and answer.codes == ["SERVICE_UNAVAILABLE"]
    assert answer.messages[0].startswith("Banco de dados (PostgreSQL) indisponível")


def test_an_unexpected_error_is_logged_and_the_client_gets_no_detail(gql, monkeypatch, caplog):
    from memory.api.graphql import schema

    def broken(kind=None):
        raise KeyError("segredo interno")

    monkeypatch.setattr(schema, "memory_stats", broken)
    answer = gql("{ stats { hits } }")
    assert answer.status == 200 and answer.codes == ["INTERNAL_SERVER_ERROR"]
    assert "segredo" not in answer.response.content.decode()
    assert any("Erro inesperado no GraphQL (stats)" in r.getMessage() and r.exc_info for r in caplog.records)


def test_the_readme_curl_example_is_a_query_this_schema_answers(gql):
    import json
    import re

    from django.conf import settings

    readme = (settings.BASE_DIR / "README.md").read_text()
    section = readme.split("\n## GraphQL API\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    assert "/api/graphql/" in block and "Authorization: Token KEY" in block
    body = json.loads(re.search(r"-d '(.*)'", block).group(1))
    make_entries(2, expires_at=timezone.now() - timedelta(seconds=1))
    found = gql(body["query"]).ok()["entries"]
    assert len(found["edges"]) == 2 and found["edges"][0]["node"]["versions"][0]["number"] == 1
