"""The Content-Security-Policy middleware (memory.middleware.ContentSecurityPolicy) sets what
django-csp's own would: the settings' headers, built once, and a view's own policy as django-csp
builds it."""
import pytest
from csp.constants import NONCE
from csp.decorators import csp_exempt, csp_update
from csp.middleware import CSPMiddleware
from django.http import HttpResponse
from django.test import RequestFactory

from memory.middleware import ContentSecurityPolicy


def plain(request):
    return HttpResponse("ok")


@csp_update({"img-src": ["https://imagens.example.com"]})
def updated(request):
    return HttpResponse("ok")


@csp_exempt()
def exempt(request):
    return HttpResponse("ok")


def with_nonce(request):
    return HttpResponse(f"<script nonce='{request.csp_nonce}'></script>")


def headers(middleware_class, view, path="/pagina/"):
    request = RequestFactory().get(path)
    middleware = middleware_class(view)
    response = middleware(request)
    return {name: response.get(name) for name in ("Content-Security-Policy", "Content-Security-Policy-Report-Only")}


@pytest.mark.parametrize("view", [plain, updated, exempt])
def test_each_response_gets_the_headers_django_csp_gives(view):
    ours = headers(ContentSecurityPolicy, view)
    assert ours == headers(CSPMiddleware, view)
    if view is exempt:
        assert ours["Content-Security-Policy"] is None
    else:
        assert "default-src 'self'" in ours["Content-Security-Policy"]
    if view is updated:
        assert "https://imagens.example.com" in ours["Content-Security-Policy"]


def test_a_nonce_taken_by_the_page_goes_through_django_csp(settings):
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'self'"], "script-src": ["'self'", NONCE]}}
    request = RequestFactory().get("/pagina/")
    response = ContentSecurityPolicy(with_nonce)(request)
    policy = sorted(part.strip() for part in response["Content-Security-Policy"].split(";"))
    assert policy == ["default-src 'self'", f"script-src 'self' 'nonce-{request._csp_nonce}'"]
    assert headers(ContentSecurityPolicy, plain) == headers(CSPMiddleware, plain)  # no nonce taken: none in it


def test_a_changed_setting_is_built_again(settings):
    middleware = ContentSecurityPolicy(plain)
    assert "frame-ancestors 'none'" in middleware(RequestFactory().get("/")).get("Content-Security-Policy")
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'none'"]},
                                        "EXCLUDE_URL_PREFIXES": ["/livre/"]}
    assert middleware(RequestFactory().get("/")).get("Content-Security-Policy") == "default-src 'none'"
    assert middleware(RequestFactory().get("/livre/x")).get("Content-Security-Policy") is None
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": {"default-src": ["'self'"]}}
    response = middleware(RequestFactory().get("/"))
    assert response.get("Content-Security-Policy-Report-Only") == "default-src 'self'"
    assert headers(ContentSecurityPolicy, plain) == headers(CSPMiddleware, plain)
