"""The optional language model, through a stand-in chat-completions server on a real port
(tests/chat_server.py): the API's own client (api/llm.py) speaks HTTP to it.

- a segment phrase the deterministic parser cannot read is sent to the model, and only
  such a phrase; a failing model is the 422 naming the words, with its reason.
"""

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from api.main import create_app
from schemas.keys import hash_api_key
from tests import support
from tests.chat_server import ChatServer, Error, running_chat_server

ADMIN_KEY = "ak_llm-test"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
MODEL_KEY = "sk-stand-in-key"
TIMEOUT_S = 1.0
VIP = {"op": "AND", "rules": [{"field": "tier", "op": "=", "value": "vip"}]}


@pytest.fixture(scope="module")
def chat() -> Iterator[ChatServer]:
    with running_chat_server(MODEL_KEY) as server:
        yield server


@pytest.fixture
def model(chat: ChatServer) -> Iterator[ChatServer]:
    """The stand-in, its requests forgotten and its answers prompt, restored after."""
    chat.requests.clear()
    chat.hold.set()
    yield chat
    chat.hold.set()


def _client(broker: str, warehouse: str, clickhouse: Client, **overrides: Any) -> TestClient:
    settings = support.api_settings(
        broker,
        warehouse,
        clickhouse_database=clickhouse.database,
        admin_key_hashes=hash_api_key(ADMIN_KEY),
        **overrides,
    )
    return TestClient(create_app(settings))


@pytest.fixture(scope="module")
def api(broker: str, warehouse: str, clickhouse: Client, chat: ChatServer) -> Iterator[TestClient]:
    """The API with the stand-in as its language model."""
    with _client(
        broker,
        warehouse,
        clickhouse,
        segment_llm_url=chat.endpoint,
        segment_llm_model="stand-in-1",
        segment_llm_api_key=MODEL_KEY,
        segment_llm_timeout_s=TIMEOUT_S,
    ) as client:
        yield client


# --- segments: the phrase fallback ------------------------------------------------------


def test_only_a_phrase_the_parser_cannot_read_goes_to_the_model(api: TestClient, model: ChatServer):
    model.reply = lambda body: orjson.dumps(VIP).decode()
    plain = api.post("/v1/segments/parse", json={"text": "vip customers"}, headers=ADMIN)
    odd = api.post("/v1/segments/parse", json={"text": "our best people"}, headers=ADMIN)
    assert plain.status_code == 200 and plain.json()["source"] == "phrases"
    assert odd.status_code == 200, odd.text
    assert odd.json()["source"] == "llm" and odd.json()["rules"] == VIP
    [asked] = model.requests
    assert asked["model"] == "stand-in-1"
    assert asked["response_format"] == {"type": "json_object"}
    assert asked["messages"][-1] == {"role": "user", "content": "our best people"}


def test_a_failing_model_leaves_the_phrase_not_understood_with_its_reason(
    api: TestClient, model: ChatServer
):
    model.reply = lambda body: Error(500, "The server had an error.")
    failed = api.post("/v1/segments/parse", json={"text": "our best people"}, headers=ADMIN)
    model.reply = lambda body: orjson.dumps({"op": "AND", "rules": [{"field": "x"}]}).decode()
    invalid = api.post("/v1/segments/parse", json={"text": "our best people"}, headers=ADMIN)
    assert failed.status_code == 422, failed.text
    assert "the language model failed: answered HTTP 500" in failed.json()["detail"][0]["msg"]
    assert invalid.status_code == 422, invalid.text
    assert "rules were invalid" in invalid.json()["detail"][0]["msg"]
