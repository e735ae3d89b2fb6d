"""GraphiQL in a real headless Chromium: a staff user logs in, opens /api/graphql/, and runs a query;
every file the page loads comes from this server and the browser reports no error (a refused
script, style or font under the Content-Security-Policy is one).

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). The screenshot goes
to ``test-artifacts/``.
"""
from urllib.parse import urlsplit

import pytest

from memory.engine.memory import ProductMemory

from tests.helpers import ARTIFACTS, NEEDS_BROWSER

pytestmark = NEEDS_BROWSER


@pytest.fixture
def staff(transactional_db, django_user_model):
    django_user_model.objects.create_user("equipe", password="senha-forte-123", is_staff=True)
    ProductMemory().save_product_data(
        {"sku": "ABC-1", "title": "Tênis de Corrida Leve"},
        {"title": "Tênis de Corrida Leve", "description": "D.", "bullet_points": ["a"], "seo_keywords": ["b"]},
        tokens_prompt=700, tokens_completion=500,
    )


def test_a_staff_user_runs_a_query_in_graphiql_served_from_local_files(live_server, browser, staff):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{live_server.url}/api/graphql/")
    WebDriverWait(browser, 15).until(lambda d: "/admin/login/" in d.current_url)  # no session: the login
    browser.find_element(By.NAME, "username").send_keys("equipe")
    browser.find_element(By.NAME, "password").send_keys("senha-forte-123")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 15).until(lambda d: d.current_url.rstrip("/").endswith("/api/graphql"))
    run = WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".graphiql-execute-button"))
    run[0].click()
    result = WebDriverWait(browser, 30).until(
        lambda d: "ABC-1" in (d.find_element(By.CSS_SELECTOR, ".result-window").text or "") and
        d.find_element(By.CSS_SELECTOR, ".result-window"))
    assert "totalCount" in result.text and "errors" not in result.text
    browser.save_screenshot(str(ARTIFACTS / "graphiql.png"))

    here = urlsplit(live_server.url).netloc
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(urlsplit(url).netloc == here or url.startswith("data:") for url in loaded), loaded
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
