"""GraphiQL at /api/graphql/ for a person with a browser: served from this app's static files (no
CDN), under the Content-Security-Policy, with the schema in the page; anyone else goes to the login."""
import re
from pathlib import Path

import pytest
from django.test import Client

from tests.api.graphql.conftest import URL

pytestmark = pytest.mark.django_db

STATIC = Path(__file__).resolve().parents[3] / "memory" / "static" / "memory" / "graphiql"


@pytest.fixture
def staff_browser(make_user):
    make_user("equipe", staff=True)
    client = Client()
    client.login(username="equipe", password="senha-forte-123")
    return client


def test_the_page_loads_every_asset_from_this_server(staff_browser):
    page = staff_browser.get(URL, HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    html = page.content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {Path(a).name for a in assets} >= {
        "react.production.min.js", "react-dom.production.min.js", "graphiql.min.js", "graphiql.min.css", "start.js"}
    assert all(a.startswith("/static/") for a in assets), assets
    # The schema's data may name URLs (a scalar's specifiedByURL); the markup around it names none.
    markup = re.sub(r'<script id="graphql-introspection".*?</script>', "", html, flags=re.DOTALL)
    assert "http://" not in markup and "https://" not in markup and "//" not in markup.replace("<!--", "")
    for asset in assets:
        assert staff_browser.get(asset).status_code == 200, asset


def test_the_vendored_scripts_load_nothing_from_elsewhere():
    # The bundles name URLs in comments and links; none is a script, style or font to fetch.
    start = (STATIC / "start.js").read_text()
    assert "http" not in start
    css = (STATIC / "graphiql.min.css").read_text()
    assert not re.search(r"url\((?!data:)", css) and "@import" not in css


def test_the_page_runs_under_the_content_security_policy(staff_browser):
    page = staff_browser.get(URL, HTTP_ACCEPT="text/html")
    policy = page["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "font-src 'self' data:" in policy  # GraphiQL's fonts are data: URLs in its stylesheet
    html = page.content.decode()
    assert not re.search(r"<script(?![^>]*\b(src|type=\"application/json\"))", html)  # no inline script


def test_the_page_carries_the_schema_and_the_csrf_token(staff_browser):
    html = staff_browser.get(URL, HTTP_ACCEPT="text/html").content.decode()
    assert '<script id="graphql-introspection" type="application/json">{"__schema"' in html
    assert re.search(r'data-csrf-token="[A-Za-z0-9]{32,}"', html)


def test_a_browser_without_a_session_goes_to_the_admin_login():
    page = Client().get(URL, HTTP_ACCEPT="text/html")
    assert page.status_code == 302 and page["Location"].startswith("/admin/login/?next=/api/graphql/")
