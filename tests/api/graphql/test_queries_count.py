"""No N+1: a page of entries with their content and versions costs the same few SQL queries for
10 entries as for 100 (the optimizer loads the columns asked for and the versions of the whole page
in one query)."""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from memory.models import ContentVersion, ProductMemoryEntry
from tests.api.graphql.conftest import call
from tests.helpers import make_entries

pytestmark = pytest.mark.django_db

PAGE = """{ entries(first: 100, ordering: PRODUCT_ID_ASC) {
  totalCount
  edges { cursor node { id productId title status content tokensSpent origin
                        versions { number origin author content tokens createdAt } } }
  pageInfo { hasNextPage endCursor }
} }"""
# The page's rows, their versions, and the count; the token's user is read once per process.
MAX_QUERIES = 3


def with_two_versions(n: int) -> None:
    make_entries(n)
    ContentVersion.objects.bulk_create([
        ContentVersion(entry_id=e.pk, number=2, payload={**e.payload, "title": "v2"}, origin="edited",
                       generator_version=e.generator_version, author="maria")
        for e in ProductMemoryEntry.objects.all()
    ])


def queries_for_a_page(api) -> tuple[int, dict]:
    call(api, "{ stats { hits } }").ok()  # the token's user is cached from here on
    with CaptureQueriesContext(connection) as captured:
        data = call(api, PAGE).ok()
    return len(captured.captured_queries), data


@pytest.mark.parametrize("n", [10, 100])
def test_a_page_of_entries_with_versions_costs_a_fixed_number_of_queries(api, n):
    with_two_versions(n)
    count, data = queries_for_a_page(api)
    edges = data["entries"]["edges"]
    assert len(edges) == n and data["entries"]["totalCount"] == n
    assert all([v["number"] for v in e["node"]["versions"]] == [2, 1] for e in edges)
    assert count <= MAX_QUERIES, count


def test_the_count_does_not_grow_with_the_page(api):
    with_two_versions(10)
    ten, _ = queries_for_a_page(api)
    make_entries(90, prefix="MAIS")
    hundred, data = queries_for_a_page(api)
    assert len(data["entries"]["edges"]) == 100
    assert ten == hundred


def test_the_optimizer_reads_only_the_columns_asked_for(api):
    make_entries(3)
    call(api, "{ stats { hits } }").ok()
    with CaptureQueriesContext(connection) as captured:
        call(api, "{ entries(first: 10) { edges { node { productId } } } }").ok()
    (page,) = [q["sql"] for q in captured.captured_queries if "memory_productmemoryentry" in q["sql"]]
    assert '"payload"' not in page and '"source_data"' not in page
