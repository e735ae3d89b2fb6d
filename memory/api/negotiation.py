"""Content negotiation of the API, which answers JSON only."""
from rest_framework.negotiation import DefaultContentNegotiation

# Accept headers that a JSON-only API answers with its one renderer, as DRF would.
PLAIN_ACCEPTS = frozenset({"", "*/*", "application/json"})


class JSONFirstNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, with a short path for the requests that accept JSON or say nothing.

    For these headers DRF's answer is always the one JSON renderer, so it is given at once;
    parsing and ranking the header is a tenth of a get served from L1 in process
    (docs/benchmarks.md). Any other header goes through DRF's negotiation (406 included).
    """

    def select_renderer(self, request, renderers, format_suffix=None):
        if len(renderers) == 1 and format_suffix is None and request.META.get("HTTP_ACCEPT", "") in PLAIN_ACCEPTS:
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
