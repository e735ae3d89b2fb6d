"""What the GraphQL tests share: a call of ``/api/graphql/`` and its answer."""
import json

import pytest

URL = "/api/graphql/"


class Answer:
    """One response of /api/graphql/: its status, ``data`` and ``errors``."""

    def __init__(self, response):
        self.response = response
        self.status = response.status_code
        self.body = response.json()
        self.data = self.body.get("data")
        self.errors = self.body.get("errors") or []

    @property
    def codes(self) -> list[str]:
        return [e.get("extensions", {}).get("code") for e in self.errors]

    @property
    def messages(self) -> list[str]:
        return [e["message"] for e in self.errors]

    def ok(self) -> dict:
        assert self.status == 200 and not self.errors, self.body
        return self.data


def call(client, query: str, variables: dict | None = None, **extra) -> Answer:
    """POST ``{"query", "variables"}`` as JSON."""
    body = {"query": query, **({"variables": variables} if variables is not None else {})}
    return Answer(client.post(URL, json.dumps(body), content_type="application/json", **extra))


@pytest.fixture
def gql(api):
    """``gql(query, variables)``: the query sent with the token of a user holding every permission."""
    return lambda query, variables=None: call(api, query, variables)
