"""The optional language model, through a stand-in chat-completions server on a real port
(tests/chat_server.py): the API's own client (api/llm.py) speaks HTTP to it.

- a segment phrase the deterministic parser cannot read is sent to the model, and only
  such a phrase; a failing model is the 422 naming the words, with its reason;
- drafted variants come back as YAML that, pasted into the default rules, the rules
  loader accepts; a draft with a placeholder not the kind's is rejected with its reason;
- a model that errs, times out or answers no JSON is a 502 with a reason;
- without a configured model, drafting is a 404 saying so;
- the console's overview offers an admin the "Draft variants" form and shows the drafts
  to copy, or says drafting is off.
"""

import html
import re
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from api.main import create_app
from pipeline.domain.rules import DEFAULT_RULES_FILE, rules_from
from schemas.keys import hash_api_key
from tests import support
from tests.chat_server import ChatServer, Error, model_settings, running_chat_server
from tests.integration.test_console import csrf_of

ADMIN_KEY = "ak_llm-test"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
MODEL_KEY = "sk-stand-in-key"
TIMEOUT_S = 3.0  # generous: the stand-in shares two loaded cores with the API
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
    with _client(broker, warehouse, clickhouse, **model_settings(chat, TIMEOUT_S)) as client:
        yield client


@pytest.fixture(scope="module")
def plain_api(broker: str, warehouse: str, clickhouse: Client) -> Iterator[TestClient]:
    """The API as shipped: no language model."""
    with _client(broker, warehouse, clickhouse) as client:
        yield client


def _variants(*variants: dict[str, Any]) -> str:
    return orjson.dumps({"variants": list(variants)}).decode()


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


# --- drafts of message variants ----------------------------------------------------------


def _pasted(snippet: str, tmp_path: Path) -> Path:
    """The default rules file with ``snippet`` pasted under cart_rescue's variants."""
    text = files("pipeline.domain").joinpath(DEFAULT_RULES_FILE).read_text(encoding="utf-8")
    anchor = "    cart_rescue:\n      name: intentflow_cart_rescue\n"
    assert text.count(anchor) == 1
    pasted = "".join(f"        {line}\n" for line in snippet.splitlines())
    path = tmp_path / "rules.yaml"
    path.write_text(text.replace(anchor, f"{anchor}      variants:\n{pasted}"), encoding="utf-8")
    return path


def test_drafts_come_back_as_yaml_the_rules_file_accepts(
    api: TestClient, model: ChatServer, tmp_path: Path
):
    model.reply = lambda body: _variants(
        {"name": "Warm & Friendly", "sms": "Hi {name}: your cart waits, {discount}% off. {cta}"},
        {"name": "urgent", "title": "Last call, {name}", "body": "{product}: {discount}% off."},
        {"name": "urgent", "button": "Finish: {discount}% off"},
    )
    response = api.post(
        "/v1/templates/cart_rescue/drafts",
        json={"count": 3, "brief": "friendly, then urgent"},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["rejected"] == [] and answer["applied"] is False
    assert [d["name"] for d in answer["drafts"]] == ["warm_friendly", "urgent", "urgent_2"]
    assert "rules file is the approval" in answer["how_to_apply"]
    [asked] = model.requests
    assert asked["messages"][-1]["content"] == "friendly, then urgent"
    rules = rules_from(_pasted(answer["yaml"], tmp_path))
    variants = rules.dispatch.templates.cart_rescue.variants
    assert [v.model_dump(exclude_none=True) for v in variants] == [
        {k: v for k, v in d.items() if v is not None} for d in answer["drafts"]
    ]
    audit = api.get("/v1/admin/audit", params={"limit": 50}, headers=ADMIN).json()
    [entry] = [e for e in audit["rows"] if e["action"] == "template_drafts"]
    assert entry["detail"] == "cart_rescue: 3 drafted, 0 rejected"
    assert entry["user_key"] == "" and "friendly" not in str(entry)


def test_a_draft_with_a_placeholder_not_the_kinds_is_rejected_with_its_reason(
    api: TestClient, model: ChatServer
):
    model.reply = lambda body: _variants(
        {"name": "coupon", "sms": "Use {coupon}: {discount}% off. {cta}"},
        {"name": "priced", "body": "{product} now at {price}"},
        {"name": "fine", "sms": "{name}, {discount}% off today. {cta}"},
        *[{"name": f"extra{n}", "sms": "{cta}"} for n in range(2)],
    )
    response = api.post("/v1/templates/high_intent/drafts", json={"count": 3}, headers=ADMIN)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [d["name"] for d in answer["drafts"]] == ["fine"]
    coupon, priced, extra = answer["rejected"]
    assert extra == {"index": 3, "draft": None, "reason": "2 more than the 3 asked for, ignored"}
    assert coupon["index"] == 0 and "unknown placeholders ['coupon']" in coupon["reason"]
    assert coupon["draft"]["sms"].startswith("Use {coupon}")
    assert priced["index"] == 1
    assert priced["reason"] == "body: placeholders ['price'] are not high_intent's"
    assert answer["yaml"].startswith("- name: fine\n")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (lambda body: Error(429, "Rate limit reached.", "rate_limit_exceeded"), "HTTP 429"),
        (lambda body: "Here are three variants: ...", "answered no JSON message"),
        (lambda body: orjson.dumps({"drafts": "nope"}).decode(), 'no "variants" list'),
        (lambda body: orjson.dumps([1, 2]).decode(), 'no "variants" list'),
    ],
)
def test_a_model_that_errs_or_answers_garbage_is_a_502_with_a_reason(
    api: TestClient, model: ChatServer, reply: Any, reason: str
):
    model.reply = reply
    response = api.post("/v1/templates/cart_rescue/drafts", json={"count": 2}, headers=ADMIN)
    assert response.status_code == 502, response.text
    assert reason in response.json()["detail"]


def test_a_model_slower_than_the_timeout_is_a_502(api: TestClient, model: ChatServer):
    model.hold.clear()  # the stand-in answers only once the client has given up
    response = api.post("/v1/templates/cart_rescue/drafts", json={"count": 2}, headers=ADMIN)
    assert response.status_code == 502, response.text
    assert response.json()["detail"] == (
        f"the language model failed: no answer within {TIMEOUT_S:g}s"
    )
    assert len(model.requests) == 1


def test_without_a_model_drafting_is_a_404_and_parsing_stays_deterministic(
    plain_api: TestClient, model: ChatServer
):
    response = plain_api.post("/v1/templates/cart_rescue/drafts", json={}, headers=ADMIN)
    assert response.status_code == 404
    assert "no language model is configured" in response.json()["detail"]
    odd = plain_api.post("/v1/segments/parse", json={"text": "our best people"}, headers=ADMIN)
    assert odd.status_code == 422
    assert odd.json()["detail"][0]["unknown_words"] == ["our", "best"]
    assert model.requests == []


def test_drafts_are_for_nudge_kinds_with_a_bounded_count(api: TestClient):
    for kind, body in [("vip_upgrade", {}), ("cart_rescue", {"count": 6})]:
        response = api.post(f"/v1/templates/{kind}/drafts", json=body, headers=ADMIN)
        assert response.status_code == 422, response.text
    assert api.post("/v1/templates/cart_rescue/drafts", json={}).status_code == 401


# --- the console's "Draft variants" form -----------------------------------------------


def _console(client: TestClient) -> str:
    """Signs ``client`` in to the console with the admin key; the session's form token."""
    token = csrf_of(client.get("/console/signin").text)
    signed = client.post(
        "/console/signin", data={"csrf": token, "key": ADMIN_KEY}, follow_redirects=False
    )
    assert signed.status_code == 303, signed.text[:300]
    return csrf_of(client.get("/console/").text)


def test_the_console_shows_an_admin_the_drafts_to_copy(api: TestClient, model: ChatServer):
    model.reply = lambda body: _variants(
        {"name": "gentle", "sms": "{name}, {product} is waiting: {discount}% off. {cta}"},
        {"name": "pricey", "sms": "{product} at {price}. {cta}"},
    )
    token = _console(api)
    assert 'id="drafts-form"' in api.get("/console/").text
    shown = api.post(
        "/console/variants/drafts",
        data={"csrf": token, "kind": "high_intent", "count": "2", "brief": "gentle"},
    )
    assert shown.status_code == 200, shown.text[:500]
    pre = re.search(r'<pre class="rule" id="drafts-yaml">(.*?)</pre>', shown.text, re.S)
    assert pre, shown.text[:500]
    assert yaml.safe_load(html.unescape(pre.group(1))) == [
        {"name": "gentle", "sms": "{name}, {product} is waiting: {discount}% off. {cta}"}
    ]
    assert "placeholders [&#39;price&#39;] are not high_intent&#39;s" in shown.text
    assert "the rules file is the approval" in shown.text
    assert [r["content"] for r in model.requests[0]["messages"][1:]] == ["gentle"]


def test_the_console_says_drafting_is_off_without_a_model(plain_api: TestClient):
    token = _console(plain_api)
    overview = plain_api.get("/console/").text
    assert 'id="drafts-off"' in overview and 'id="drafts-form"' not in overview
    refused = plain_api.post(
        "/console/variants/drafts", data={"csrf": token, "kind": "cart_rescue"}
    )
    assert refused.status_code == 200  # followed back to the overview, with the reason
    assert "no language model is configured" in refused.text
