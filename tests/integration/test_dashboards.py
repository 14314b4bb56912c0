"""The Grafana dashboards, checked without Grafana.

Static checks: every dashboard JSON parses, names only provisioned datasources and
follows the Infinity query model (tests/unit/test_dashboards_sdk.py checks that it is
the output of dashboards/builders/ and that Grafana's SDK decodes it).

Then every panel's request, as Grafana's Infinity datasource would send it (its
path and parameters with the time macros and template variables substituted,
the read key in the Authorization header), is sent to the API of a stack that
has processed a simulated day of traffic: the real broker and warehouse, the
migrations, a real worker process (engine and sink) and the API. Each answer
must hold rows whose values have the types the panel's columns declare.
"""

import ast
import asyncio
import itertools
import json
import math
import operator
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from clickhouse_connect.driver.client import Client

from api.main import create_app
from pipeline.local.simulate import generate_events, post_events
from schemas.inbound import twilio_inbound_form, whatsapp_text_message, whatsapp_webhook
from schemas.keys import hash_api_key
from schemas.messages import Receipt
from schemas.receipt_ids import receipt_id
from schemas.time import epoch_ms
from schemas.topics import RECEIPTS, TELEMETRY_RAW
from tests import support
from tests.collector_server import READ_KEY, SERVER_KEY, WRITE_KEY, collector_settings, running_api
from tests.rows import variants_in_force

DASHBOARDS_DIR = support.PROJECT_ROOT / "dashboards"
PROVISIONING = DASHBOARDS_DIR / "provisioning/datasources"
INFINITY = "yesoreyeram-infinity-datasource"
COLUMN_TYPES = {"string", "number", "timestamp"}
# Grafana's interval for a day on a dashboard panel ($__interval, $__interval_ms).
INTERVAL, INTERVAL_MS = "5m", 300_000
APP_ID = f"dashboards-{uuid.uuid4().hex[:8]}"
USERS, EVENTS, SEED = 250, 5000, 20240501
ADMIN_KEY = "ak_dashboards-test"
# Nudge outcomes that need the dispatcher, the providers' receipts and orders placed
# from a message's link: this stack runs none of them, so these may all be 0 here
# (their types are still checked). Decisions (emitted, suppressed) must not be.
NEEDS_DISPATCH = {"sent", "delivered", "read", "clicked", "failed", "cancelled"}
NEEDS_DISPATCH |= {"converted", "orders", "revenue"}


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text())
        for path in sorted((DASHBOARDS_DIR / "json").glob("*.json"))
    }


DASHBOARDS = load_dashboards()
DATASOURCES = {
    d["uid"]: d
    for path in sorted(PROVISIONING.glob("*.yaml"))
    for d in yaml.safe_load(path.read_text())["datasources"]
}


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: dict[str, Any]
    target: dict[str, Any]
    variables: dict[str, list[str]]  # name → values to try (every option of a custom one)

    @property
    def id(self) -> str:
        name = self.dashboard.removesuffix(".json")
        return f"{name}:{self.panel['id']}:{self.panel['title']}:{self.target['refId']}"


def variable_values(dashboard: dict[str, Any]) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "custom":
            values[variable["name"]] = [option["value"] for option in variable["options"]]
            assert variable["current"]["value"] in values[variable["name"]]
        elif variable["type"] == "textbox":
            values[variable["name"]] = [variable["current"]["value"]]
        else:
            raise AssertionError(f"variable type {variable['type']} is not replayed here")
    return values


def panel_queries() -> list[PanelQuery]:
    found = []
    for name, dashboard in DASHBOARDS.items():
        variables = variable_values(dashboard)
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                # Prometheus's queries are checked against the exported metric names
                # (tests/unit/test_dashboard_promql.py); this stack runs no Prometheus.
                if target["datasource"]["type"] != "prometheus":
                    found.append(PanelQuery(name, panel, target, variables))
    return found


QUERIES = panel_queries()


# --- what Grafana does to a query before Infinity sends it ---------------------------

_REFERENCE = re.compile(r"\$\{([^}]+)\}|\$(\w+)|\[\[(\w+)\]\]")


def grafana_builtins(start: datetime, end: datetime) -> dict[str, str]:
    def iso(moment: datetime) -> str:
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    return {
        "__from:date:iso": iso(start),
        "__to:date:iso": iso(end),
        "__from": str(int(start.timestamp() * 1000)),
        "__to": str(int(end.timestamp() * 1000)),
        "__interval": INTERVAL,
        "__interval_ms": str(INTERVAL_MS),
    }


def interpolate(text: str, values: dict[str, str]) -> str:
    """Grafana's template substitution; an unknown reference fails the test."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        assert name in values, f"{text!r} refers to ${name}, which is not defined"
        return values[name]

    return _REFERENCE.sub(substitute, text)


def referenced(query: PanelQuery) -> set[str]:
    texts = [query.target["url"], *(p["value"] for p in query.target["url_options"]["params"])]
    texts += [c["selector"] for c in query.target.get("computed_columns", [])]
    names = set()
    for text in texts:
        for match in _REFERENCE.finditer(text):
            names.add(match.group(1) or match.group(2) or match.group(3))
    return names


def variable_combinations(query: PanelQuery) -> list[dict[str, str]]:
    used = sorted(referenced(query) & set(query.variables))
    options = [query.variables[name] for name in used]
    return [dict(zip(used, combo, strict=True)) for combo in itertools.product(*options)]


def select(value: Any, path: str) -> Any:
    """A GJSON-style dotted path, as Infinity's backend parser applies selectors."""
    for part in path.split(".") if path else []:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}
_OPERATORS |= {ast.Div: operator.truediv}


def evaluate(expression: str, row: dict[str, Any]) -> float:
    """Arithmetic of a computed column over the row's fields (names are column texts)."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.Name):
            assert node.id in row, f"computed column refers to unknown field {node.id!r}"
            return row[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](walk(node.left), walk(node.right))
        raise AssertionError(f"unsupported expression {ast.dump(node)}")

    return walk(ast.parse(expression, mode="eval"))


# --- static checks -----------------------------------------------------------------------


def test_dashboards_exist_with_unique_uids() -> None:
    assert set(DASHBOARDS) == {
        "storefront-funnel.json",
        "nudges.json",
        "pipeline-health.json",
        "campaigns.json",
    }
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)


def test_every_panel_uses_only_provisioned_datasources() -> None:
    expected = {"intentflow-api", "intentflow-health", "intentflow-clickhouse"}
    assert expected | {"intentflow-prometheus"} <= set(DATASOURCES)
    for name, dashboard in DASHBOARDS.items():
        assert dashboard["panels"], name
        for panel in dashboard["panels"]:
            sources = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            for source in sources:
                assert source["uid"] in DATASOURCES, f"{name}: {panel['title']}: {source}"
                assert source["type"] == DATASOURCES[source["uid"]]["type"]
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(set(ids)) == len(ids), name


def test_every_query_follows_the_infinity_model() -> None:
    openapi = create_app(collector_settings("127.0.0.1:1")).openapi()
    app_routes = {(path, m.upper()) for path, ops in openapi["paths"].items() for m in ops}
    for query in QUERIES:
        target = query.target
        assert target["datasource"]["type"] == INFINITY, query.id
        assert (target["type"], target["source"], target["parser"]) == ("json", "url", "backend")
        assert target["url_options"]["method"] == "GET"
        assert (target["url"], "GET") in app_routes, f"{query.id}: no route {target['url']}"
        assert target["columns"], query.id
        for column in [*target["columns"], *target.get("computed_columns", [])]:
            assert column["type"] in COLUMN_TYPES, query.id
            assert column["text"], query.id
        for column in target["columns"]:
            assert re.fullmatch(r"\w+(\.\w+)*", column["selector"]), query.id
        keys = [p["key"] for p in target["url_options"]["params"]]
        assert len(set(keys)) == len(keys), query.id
        if "from" in keys or "to" in keys:
            values = {p["key"]: p["value"] for p in target["url_options"]["params"]}
            assert values["from"] == "${__from:date:iso}" and values["to"] == "${__to:date:iso}"


def test_template_variables_are_defined_and_used() -> None:
    for name, dashboard in DASHBOARDS.items():
        defined = set(variable_values(dashboard))
        builtins = set(grafana_builtins(datetime.now(UTC), datetime.now(UTC)))
        used: set[str] = set()
        for query in (q for q in QUERIES if q.dashboard == name):
            names = referenced(query)
            assert names <= defined | builtins, f"{query.id}: {names - defined - builtins}"
            used |= names
        assert defined <= used, f"{name}: variables {defined - used} are never used"


# --- a stack that has processed a simulated day -------------------------------------------


@dataclass(frozen=True)
class Stack:
    api: str
    start: datetime
    end: datetime


def warehouse_count(client: Client, anonymous_ids: list[str]) -> int:
    result = client.query(
        "SELECT uniqExact(event_id) FROM events WHERE anonymous_id IN {ids:Array(String)}",
        parameters={"ids": anonymous_ids},
    )
    return int(result.result_rows[0][0])


async def produce_invalid_record(brokers: str) -> None:
    """A record the engine cannot parse: dead-lettered with its reason."""
    producer = AIOKafkaProducer(bootstrap_servers=brokers)
    await producer.start()
    try:
        await producer.send_and_wait(
            TELEMETRY_RAW.name, b'{"event_id": "not-a-uuid"}', key=b"dashboards-test"
        )
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, broker: str, warehouse: str, clickhouse: Client
) -> Iterator[Stack]:
    """Broker, migrated warehouse database, a worker process and the API, after a day of
    simulated storefront traffic has reached the warehouse."""
    tmp = tmp_path_factory.mktemp("dashboards")
    env = support.process_env(
        app_id=APP_ID,
        kafka_brokers=broker,
        clickhouse_url=warehouse,
        clickhouse_database=clickhouse.database,
        data_dir=str(tmp / "data"),
        log_level="warning",
    )
    worker = support.python_process("worker", ["-m", "pipeline.cli", "worker"], tmp / "w.log", env)
    settings = collector_settings(
        broker,
        app_id=APP_ID,
        clickhouse_url=warehouse,
        clickhouse_database=clickhouse.database,
        admin_key_hashes=frozenset({hash_api_key(ADMIN_KEY)}),
        **support.api_provider_settings(),
    )
    # The campaigns dashboard needs a launched campaign (pipeline/campaigns/).
    launcher = support.python_process(
        "launcher", ["-m", "pipeline.cli", "campaigns", "--poll-s", "0.5"], tmp / "l.log", env
    )
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    day_end = now - timedelta(minutes=2)
    events = generate_events(SEED, USERS, EVENTS, day_end, days=1)
    anonymous_ids = sorted({event["anonymous_id"] for event in events})
    worker.start()
    try:
        with running_api(settings) as api:
            summary = post_events(events, api, WRITE_KEY, SERVER_KEY, batch_size=250)
            assert summary.failed_requests == 0, summary.rejection_reasons
            assert summary.accepted == len(events), summary.rejection_reasons
            asyncio.run(produce_invalid_record(broker))
            support.wait_for(
                lambda: (
                    worker.is_running()
                    and warehouse_count(clickhouse, anonymous_ids) >= len(events)
                ),
                90,
                f"{len(events)} events in the warehouse (worker log: {tmp / 'w.log'})",
                interval_s=1.0,
            )
            referred = refer_a_friend(api, events)
            support.wait_for(
                lambda: warehouse_count(clickhouse, [referred]) >= 3,
                60,
                "the referred visitor's events in the warehouse",
                interval_s=0.5,
            )
            launcher.start()
            launch_campaign(api, "dashboards")
            # The send-time panels compare a best-hour campaign's two arms.
            best = launch_campaign(api, "dashboards best hour", send_time="best_hour")
            read_at_best_hour(api, broker, clickhouse, best)
            nudges_at_best_hour(api, broker)
            record_variants(clickhouse, now)
            reply_stop(api, events)
            message = priced_conversion(api, broker)
            # The cost panel's row exists from the "sent" receipt on; its conversion only
            # once the read receipt and the order are stored too: wait for both.
            support.wait_for(
                lambda: converted(clickhouse, message),
                60,
                "the priced message's read receipt and order in the warehouse",
                interval_s=0.5,
            )
            yield Stack(api, day_end - timedelta(days=1, hours=1), now + timedelta(minutes=10))
    finally:
        launcher.stop(10)
        worker.stop(15)
    log = (tmp / "w.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def refer_a_friend(api: str, events: list[dict[str, Any]]) -> str:
    """The referrals panel needs a referral: a simulated shopper's link brings a new
    visitor who signs up and orders. Returns the visitor's anonymous id."""
    referrer = next(e["user_id"] for e in events if e.get("user_id"))
    made = httpx.post(
        f"{api}/v1/referrals",
        json={"user_id": referrer},
        headers={"Authorization": f"Bearer {SERVER_KEY}"},
    )
    assert made.status_code == 201, made.text
    code, anon = made.json()["code"], f"referred-{uuid.uuid4().hex[:8]}"
    at = datetime.now(UTC) - timedelta(minutes=1)
    landing = {"campaign": {"source": "referral", "medium": "link", "name": code}}

    def sent(name: str, seconds: int, key: str, **fields: Any) -> None:
        event = {
            "event_id": str(uuid.uuid4()),
            "name": name,
            "timestamp": (at + timedelta(seconds=seconds)).isoformat(),
            "anonymous_id": anon,
            **fields,
        }
        answer = httpx.post(
            f"{api}/v1/track", json={"batch": [event]}, headers={"Authorization": f"Bearer {key}"}
        )
        assert answer.status_code == 202 and not answer.json()["rejected"], answer.text

    sent("page_view", 0, WRITE_KEY, properties={"url": "https://shop.example/"}, context=landing)
    sent("identify", 5, WRITE_KEY, user_id=f"friend-{anon}", properties={})
    line = {"product_id": "p-ref", "quantity": 1, "amount": 42.0}
    order = {"order_id": f"o-{anon}", "items": [line], "total": 42.0, "currency": "EUR"}
    sent("order_placed", 30, SERVER_KEY, user_id=f"friend-{anon}", properties=order)
    return anon


def reply_stop(api: str, events: list[dict[str, Any]]) -> None:
    """The opt-outs panel needs an opt-out: one simulated shopper replies STOP."""
    consent = next(
        e
        for e in events
        if e["name"] == "consent" and e["properties"]["granted"] and e["properties"].get("phone")
    )
    channel, phone = consent["properties"]["channel"], consent["properties"]["phone"]
    if channel == "whatsapp":
        message = whatsapp_text_message(
            phone, "STOP", f"wamid.{uuid.uuid4().hex}", datetime.now(UTC)
        )
        body = whatsapp_webhook(messages=[message])
        response = httpx.post(
            f"{api}/v1/webhooks/whatsapp", content=body, headers=support.meta_signed(body)
        )
        assert response.status_code == 200 and response.json()["opted_out"] == 1, response.text
    else:
        url = f"{api}/v1/webhooks/twilio"
        form = twilio_inbound_form(phone, "STOP", f"SM{uuid.uuid4().hex}", "AC1", "+15005550006")
        response = httpx.post(url, data=form, headers=support.twilio_signed(url, form))
        assert response.status_code == 200, response.text


async def produce_receipts(broker: str, user: str, values: list[bytes]) -> None:
    """Receipts on their topic, keyed by user, as the dispatcher and the webhooks send them."""
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(RECEIPTS.name, value, key=user.encode())
    finally:
        await producer.stop()


def converted(client: Client, message: str) -> bool:
    read = client.query(
        "SELECT count() FROM receipts WHERE message_id = {m:String} AND status = 'read'",
        parameters={"m": message},
    ).result_rows[0][0]
    ordered = client.query(
        "SELECT count() FROM events WHERE name = 'order_placed' AND utm_message_id = {m:String}",
        parameters={"m": message},
    ).result_rows[0][0]
    return bool(read and ordered)


def priced_conversion(api: str, broker: str) -> str:
    """The cost panel needs a priced send that converted: a dispatcher's "sent" receipt
    with its price and the shopper's "read" (this stack runs no dispatcher: the test
    produces them as the dispatcher and the webhook would), then the order from the link."""
    # Half a day back: inside the dashboards' range, outside the last hour that other
    # modules sharing the warehouse read their own conversions in (test_dispatch).
    at = datetime.now(UTC) - timedelta(hours=12)
    message, user = uuid.uuid4().hex, f"cost-{uuid.uuid4().hex[:8]}"

    def receipt(status: str, moment: datetime, **extra: Any) -> bytes:
        return Receipt(
            receipt_id=receipt_id(message, "whatsapp", status, "dashboards"),
            message_id=message,
            kind="cart_rescue",
            user_key=user,
            channel="whatsapp",
            status=status,  # type: ignore[arg-type]
            at=moment,
            **extra,
        ).to_json()

    provider_id = f"wamid.{message}"
    sent = receipt("sent", at, provider_message_id=provider_id, cost=0.0625, currency="USD")
    read = receipt("read", at + timedelta(seconds=5), provider_message_id=provider_id)
    asyncio.run(produce_receipts(broker, user, [sent, read]))
    order = {
        "event_id": str(uuid.uuid4()),
        "name": "order_placed",
        "timestamp": (at + timedelta(seconds=30)).isoformat(),
        "anonymous_id": f"anon-{user}",
        "user_id": user,
        "context": {"campaign": {"utm_message_id": message}},
        "properties": {
            "order_id": f"o-{message[:12]}",
            "items": [{"product_id": "p1", "quantity": 1, "amount": 40.0}],
            "total": 40.0,
            "currency": "EUR",
        },
    }
    response = httpx.post(
        f"{api}/v1/track",
        json={"batch": [order]},
        headers={"Authorization": f"Bearer {SERVER_KEY}"},
    )
    assert response.status_code == 202 and response.json()["rejected"] == [], response.text
    return message


def record_variants(client: Client, now: datetime) -> None:
    """The variants panel needs a bandit snapshot in force (the dispatcher takes them; this
    stack runs none): one of two cart-rescue variants, recorded as the dispatcher would."""
    effective_ms = epoch_ms(now - timedelta(minutes=1))
    variants_in_force(client, "cart_rescue", effective_ms, ("control", 40, 6), ("warm", 44, 11))


def read_at_best_hour(api: str, broker: str, client: Client, campaign_id: str) -> None:
    """The send-time panels compare the arms' read rates: one best-hour target reads its
    message (the provider's "read" receipt, as the webhook produces it)."""
    message, user = client.query(
        "SELECT message_id, user_key FROM campaign_members WHERE campaign_id = {c:String}"
        " AND member_group = 'target' AND send_arm = 'best_hour' ORDER BY user_key LIMIT 1",
        parameters={"c": campaign_id},
    ).result_rows[0]
    read = Receipt(
        receipt_id=receipt_id(message, "whatsapp", "read", "dashboards"),
        message_id=message,
        kind="campaign",
        user_key=user,
        campaign_id=campaign_id,
        channel="whatsapp",
        status="read",
        at=datetime.now(UTC),
    ).to_json()
    asyncio.run(produce_receipts(broker, user, [read]))
    url = f"{api}/v1/campaigns/{campaign_id}"
    read_key = {"Authorization": f"Bearer {READ_KEY}"}
    support.wait_for(
        lambda: httpx.get(url, headers=read_key).json()["best_hour_read"] >= 1,
        60,
        "the best-hour target's read receipt in the campaign's report",
        interval_s=0.5,
    )


def nudges_at_best_hour(api: str, broker: str) -> None:
    """The nudges' send-time panel compares the arms of high-intent nudges held for a best
    hour (the dispatcher's receipts carry the arm; this stack runs none): one per arm is
    sent, the best hour's is read."""
    now, receipts = datetime.now(UTC), []
    for arm, hour, statuses in (("best_hour", 19, ("sent", "read")), ("random_hour", 4, ("sent",))):
        message = uuid.uuid4().hex
        for status in statuses:
            receipts.append(
                Receipt(
                    receipt_id=receipt_id(message, "sms", status, "dashboards"),
                    message_id=message,
                    kind="high_intent",
                    user_key=f"send-time-{arm}",
                    channel="sms",
                    status=status,
                    at=now,
                    send_arm=arm if status == "sent" else None,
                    send_hour=hour if status == "sent" else None,
                ).to_json()
            )
        asyncio.run(produce_receipts(broker, f"send-time-{arm}", receipts[-len(statuses) :]))
    url = f"{api}/v1/metrics/send_time"
    span = {
        "from": (now - timedelta(hours=1)).isoformat(),
        "to": (now + timedelta(hours=1)).isoformat(),
    }
    read_key = {"Authorization": f"Bearer {READ_KEY}"}

    def read_in_best_arm() -> bool:
        rows = httpx.get(url, params=span, headers=read_key).json()["rows"]
        return any(r["arm"] == "best_hour" and r["read"] == 1 for r in rows)

    support.wait_for(read_in_best_arm, 60, "the best-hour nudge's read receipt", interval_s=0.5)


def launch_campaign(api: str, name: str, send_time: str = "as_created") -> str:
    """A campaign to every shopper of the simulated day, launched (reach, holdout, counts);
    its id."""
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    rules = {"op": "AND", "rules": [{"field": "visits", "op": ">=", "value": 1}]}
    segment = httpx.post(
        f"{api}/v1/segments", json={"name": f"visitors of {name}", "rules": rules}, headers=admin
    )
    assert segment.status_code == 201, segment.text
    campaign = httpx.post(
        f"{api}/v1/campaigns",
        json={
            "name": name,
            "segment_id": segment.json()["segment_id"],
            "schedule": {"send_time": send_time},
        },
        headers=admin,
    )
    assert campaign.status_code == 202, campaign.text
    url = f"{api}/v1/campaigns/{campaign.json()['campaign_id']}"
    read = {"Authorization": f"Bearer {READ_KEY}"}
    support.wait_for(
        lambda: httpx.get(url, headers=read).json()["status"] == "launched",
        30,
        "the campaign launched",
        interval_s=0.5,
    )
    return campaign.json()["campaign_id"]


def fetch(stack: Stack, query: PanelQuery, values: dict[str, str]) -> httpx.Response:
    target = query.target
    params = [(p["key"], interpolate(p["value"], values)) for p in target["url_options"]["params"]]
    url = stack.api + interpolate(target["url"], values)
    # Both provisioned Infinity datasources send the read key as a bearer token.
    datasource = DATASOURCES[target["datasource"]["uid"]]
    assert datasource["jsonData"]["auth_method"] == "bearerToken"
    headers = {"Authorization": f"Bearer {READ_KEY}"}
    return httpx.get(url, params=params, headers=headers, timeout=30)


def rows_of(query: PanelQuery, response: httpx.Response) -> list[dict[str, Any]]:
    ignores_status = DATASOURCES[query.target["datasource"]["uid"]]["jsonData"].get(
        "ignoreStatusCodeCheck", False
    )
    ok = {200, 503} if ignores_status else {200}
    assert response.status_code in ok, f"{query.id}: {response.status_code} {response.text}"
    found = select(response.json(), query.target["root_selector"])
    rows = [found] if isinstance(found, dict) else found
    assert isinstance(rows, list), f"{query.id}: root selector gives {type(found).__name__}"
    return rows


def check_value(kind: str, value: Any, where: str, stack: Stack) -> None:
    if value is None:
        return
    if kind == "number":
        assert isinstance(value, int | float) and not isinstance(value, bool), where
        assert math.isfinite(value), where
    elif kind == "string":
        assert isinstance(value, str), where
    else:
        assert isinstance(value, str), where
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        assert moment.tzinfo is not None, where
        step = timedelta(milliseconds=INTERVAL_MS)
        assert stack.start - step <= moment <= stack.end, f"{where}: {value} out of range"


def rows_when_present(
    stack: Stack, query: PanelQuery, values: dict[str, str], where: str
) -> list[dict[str, Any]]:
    """The answer's rows; decisions and dead letters reach the warehouse shortly after
    the events, so an empty answer is asked again for a while."""
    rows: list[dict[str, Any]] = []

    def answered() -> bool:
        rows[:] = rows_of(query, fetch(stack, query, values))
        return bool(rows)

    support.wait_for(answered, 30, f"rows for {where}", interval_s=1.0)
    return rows


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.id)
def test_panel_request_returns_rows_of_the_declared_types(stack: Stack, query: PanelQuery) -> None:
    builtins = grafana_builtins(stack.start, stack.end)
    for combination in variable_combinations(query):
        values = builtins | combination
        where = f"{query.id} {combination}"
        rows = rows_when_present(stack, query, values, where)
        columns = query.target["columns"]
        for column in columns:
            seen = [select(row, column["selector"]) for row in rows]
            for value in seen:
                check_value(column["type"], value, f"{where} {column['selector']}", stack)
            assert any(v is not None for v in seen), f"{where}: no {column['selector']}"
        numbers = [
            select(row, c["selector"]) for row in rows for c in columns if c["type"] == "number"
        ]
        numeric = {c["selector"] for c in columns if c["type"] == "number"}
        if numbers and not numeric <= NEEDS_DISPATCH:
            assert any(numbers), f"{where}: every number is 0 (wrong time range?)"
        for computed in query.target.get("computed_columns", []):
            expression = interpolate(computed["selector"], values)
            for row in rows:
                fields = {c["text"]: select(row, c["selector"]) for c in columns}
                result = evaluate(expression, fields)
                check_value(computed["type"], result, f"{where} {computed['text']}", stack)
