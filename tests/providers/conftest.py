import pytest

from memory.providers.openai import reset_clients
from tests.providers.fake_openai import FakeOpenAI, FullBacklog


@pytest.fixture
def fake_openai():
    """A scripted OpenAI-compatible server on loopback; the process's SDK clients are forgotten after."""
    server = FakeOpenAI().start()
    yield server
    reset_clients()
    server.stop()


@pytest.fixture
def full_backlog():
    """A port that never completes a TCP handshake."""
    port = FullBacklog()
    yield port
    reset_clients()
    port.close()
