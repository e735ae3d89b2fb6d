"""End to end in a real headless Chromium: log into the admin, search, open the dashboard.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them).
Screenshots go to ``test-artifacts/``.
"""
from datetime import timedelta

import pytest
from django.utils import timezone

from memory.engine.counters import flush_counters
from memory.models import DailyStats
from memory.engine.memory import ProductMemory

from tests.helpers import ARTIFACTS, NEEDS_BROWSER

# A marketplace title as long as real ones get: the list must still show it in two lines at most.
LONG_TITLE = ("Kit 3 Camisetas Masculinas Básicas 100% Algodão Premium Gola Redonda Manga Curta "
              "Tamanhos P ao GG Cores Sortidas Preto Branco Cinza Mescla")

pytestmark = NEEDS_BROWSER


@pytest.fixture
def catalog(transactional_db, django_user_model):
    django_user_model.objects.create_superuser("gerente", "gerente@example.com", "senha-forte-123")
    memory = ProductMemory()
    for sku, title in (("ABC-1", "Tênis de Corrida Leve"), ("XYZ-2", "Caneca Térmica Inox"),
                       ("MOC-3", "Mochila Escolar Reforçada"), ("LOJA2-CAS-0023", LONG_TITLE)):
        memory.save_product_data(
            {"sku": sku, "title": title},
            {"title": title, "description": "Descrição.", "bullet_points": ["Qualidade"], "seo_keywords": ["x"]},
            tokens_prompt=700, tokens_completion=500,
        )
    for _ in range(3):
        memory.get_product_data("ABC-1")
    memory.get_product_data("NAO-EXISTE")
    flush_counters()
    today = timezone.localdate()
    DailyStats.objects.bulk_create([
        DailyStats(date=today - timedelta(days=d), hits=10 + 3 * d, misses=d % 4, generations=d % 3,
                   tokens_spent=1200 * (d % 3), tokens_saved=1200 * (10 + 3 * d))
        for d in range(1, 30)
    ])


def severe_errors(driver):
    """The browser's errors since the last call: a failed request (the favicon too), a script error."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_a_staff_user_logs_in_searches_the_entries_and_sees_the_dashboard(live_server, browser, catalog):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    log_in(browser, live_server)
    assert browser.find_element(By.CSS_SELECTOR, ".memory-dashboard-link a").text == "Painel de estatísticas"
    browser.save_screenshot(str(ARTIFACTS / "admin-index.png"))
    assert link_lines(browser) == 1

    browser.get(f"{live_server.url}/admin/memory/productmemoryentry/")
    search = browser.find_element(By.ID, "searchbar")
    search.send_keys("caneca")
    search.submit()
    WebDriverWait(browser, 10).until(lambda d: "q=caneca" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert [row.find_element(By.CSS_SELECTOR, "th").text for row in rows] == ["XYZ-2"]
    assert rows[0].find_element(By.CSS_SELECTOR, ".memory-badge").text == "ativo"
    browser.save_screenshot(str(ARTIFACTS / "admin-search.png"))
    assert severe_errors(browser) == []

    rows[0].find_element(By.LINK_TEXT, "XYZ-2").click()
    content = browser.find_element(By.CSS_SELECTOR, ".field-payload_pretty pre.memory-json")
    assert '"title": "Caneca Térmica Inox"' in content.text
    browser.save_screenshot(str(ARTIFACTS / "admin-detail.png"))
    browser.back()

    browser.find_element(By.CSS_SELECTOR, ".object-tools a[href='/memory/dashboard/']").click()
    WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith("/memory/dashboard/"))
    assert browser.find_element(By.CSS_SELECTOR, "#content h1").text == "Painel da memória"
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.memory-chart")
    assert [c.get_attribute("data-chart") for c in charts] == ["hits", "misses", "generations", "tokens_saved"]
    for chart in charts:
        assert chart.size["width"] > 300 and chart.size["height"] > 100
        drawn = browser.execute_script(
            "return Array.from(arguments[0].querySelectorAll('rect.bar'))"
            ".filter(r => r.getBBox().height > 0 && getComputedStyle(r).fill !== 'none').length",
            chart,
        )
        assert drawn > 0, chart.get_attribute("data-chart")
        assert len(chart.find_elements(By.CSS_SELECTOR, "rect.bar")) == 30
    top = browser.find_element(By.ID, "top-products").text
    assert "ABC-1" in top
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    assert severe_errors(browser) == []
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def lines_of(driver, element) -> int:
    """How many lines of text ``element``'s box is high."""
    line_height = driver.execute_script(
        "const s = getComputedStyle(arguments[0]);"
        "return s.lineHeight === 'normal' ? parseFloat(s.fontSize) * 1.2 : parseFloat(s.lineHeight);",
        element,
    )
    padding = driver.execute_script(
        "const s = getComputedStyle(arguments[0]); return parseFloat(s.paddingTop) + parseFloat(s.paddingBottom);",
        element,
    )
    return round((element.size["height"] - padding) / line_height)


def text_lines(driver, element) -> int:
    """How many lines the text inside ``element`` is laid out in."""
    return driver.execute_script(
        "const range = document.createRange(); range.selectNodeContents(arguments[0]);"
        "return new Set(Array.from(range.getClientRects(), r => Math.round(r.top))).size;",
        element,
    )


def link_lines(driver) -> int:
    """How many lines the dashboard link's text takes on the admin index (1 when it is laid out right)."""
    from selenium.webdriver.common.by import By

    return lines_of(driver, driver.find_element(By.CSS_SELECTOR, ".memory-dashboard-link a"))


def log_in(browser, live_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{live_server.url}/admin/login/?next=/admin/")
    browser.find_element(By.NAME, "username").send_keys("gerente")
    browser.find_element(By.NAME, "password").send_keys("senha-forte-123")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda d: "/login/" not in d.current_url)


@pytest.mark.parametrize("language, text", [("pt-br", "Painel de estatísticas"), ("en", "Stats dashboard")])
def test_admin_index_shows_the_dashboard_link_on_one_line(live_server, browser, catalog, language, text):
    from selenium.webdriver.common.by import By

    log_in(browser, live_server)
    browser.add_cookie({"name": "django_language", "value": language})
    browser.get(f"{live_server.url}/admin/")
    assert browser.find_element(By.CSS_SELECTOR, ".memory-dashboard-link a").text == text
    browser.save_screenshot(str(ARTIFACTS / f"admin-index-{language}.png"))
    assert link_lines(browser) == 1
    assert severe_errors(browser) == []


@pytest.mark.parametrize("language, columns", [
    ("pt-br", ["PRODUTO", "TÍTULO", "TIPO", "SITUAÇÃO", "ACERTOS", "TOKENS ECONOMIZADOS", "EXPIRA EM",
               "ATUALIZADO EM"]),
    ("en", ["PRODUCT", "TITLE", "KIND", "STATUS", "HITS", "TOKENS SAVED", "EXPIRES AT", "UPDATED AT"]),
])
def test_entries_list_fits_1400_px_with_titles_in_two_lines_at_most(live_server, browser, catalog, language, columns):
    from selenium.webdriver.common.by import By

    log_in(browser, live_server)
    browser.add_cookie({"name": "django_language", "value": language})
    assert browser.execute_script("return window.innerWidth") == 1400
    browser.get(f"{live_server.url}/admin/memory/productmemoryentry/")
    browser.save_screenshot(str(ARTIFACTS / f"admin-list-{language}.png"))

    results = browser.find_element(By.CSS_SELECTOR, "#changelist-form .results")
    assert browser.execute_script("return arguments[0].scrollWidth - arguments[0].clientWidth", results) <= 0
    right_edge = browser.execute_script("return arguments[0].getBoundingClientRect().right", results)
    headings = browser.find_elements(By.CSS_SELECTOR, "#result_list thead th")
    assert [" ".join(h.text.split()) for h in headings[1:]] == columns
    for heading in headings:
        assert browser.execute_script("return arguments[0].getBoundingClientRect().right", heading) <= right_edge

    titles = browser.find_elements(By.CSS_SELECTOR, "#result_list td.field-title_column .memory-title")
    assert len(titles) == 4
    for title in titles:
        assert lines_of(browser, title) <= 2, title.get_attribute("title")
    long_one = next(t for t in titles if t.get_attribute("title") == LONG_TITLE)
    assert browser.execute_script("return arguments[0].scrollHeight > arguments[0].clientHeight", long_one)
    for cell in browser.find_elements(By.CSS_SELECTOR, "#result_list .field-product_id, #result_list td.field-"
                                                       "expires_column, #result_list td.field-updated_column"):
        assert text_lines(browser, cell) == 1, cell.text
    # The navigation sidebar starts closed (the room the list needs) and opens from its toggle.
    assert not browser.find_element(By.ID, "nav-sidebar").is_displayed()
    browser.find_element(By.ID, "toggle-nav-sidebar").click()
    assert browser.find_element(By.ID, "nav-sidebar").is_displayed()
    assert severe_errors(browser) == []


def test_admin_dashboard_language_menu_and_api_docs_run_under_the_content_security_policy(live_server, browser, catalog):
    """The policy runs no inline script and loads nothing from elsewhere: each page still works and
    the browser reports no violation (a blocked script or style is a SEVERE console entry)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    log_in(browser, live_server)
    for page in ("/admin/memory/productmemoryentry/", "/admin/memory/productmemoryentry/import/",
                 "/admin/memory/productmemoryentry/export/", "/memory/dashboard/"):
        browser.get(f"{live_server.url}{page}")
        assert browser.find_element(By.ID, "content").is_displayed(), page
        assert severe_errors(browser) == [], page

    # the language menu submits itself on change (a script file, no inline handler)
    Select(browser.find_element(By.ID, "memory-language-select")).select_by_value("en")
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en")
    assert browser.find_element(By.CSS_SELECTOR, "#content h1").text == "Memory dashboard"
    assert severe_errors(browser) == []

    # Swagger UI, served from drf_spectacular_sidecar, with its start-up script as a file
    browser.get(f"{live_server.url}/api/docs/")
    WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock"))
    assert "BeeCatalog Memory API" in browser.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
    browser.find_element(By.CSS_SELECTOR, ".swagger-ui .opblock .opblock-summary").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock-body"))
    browser.save_screenshot(str(ARTIFACTS / "api-docs.png"))
    assert severe_errors(browser) == []
