"""Catalog rows from events: a store backend's event that names a product makes a ``products``
row stamped with the event's time; a browser's never does; any properties make a bounded,
valid entry or none."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from pipeline.sink.batch import SinkBatch
from pipeline.sink.processors import process_event
from pipeline.sink.rows import EVENTS, PRODUCTS, catalog_row, event_rows
from schemas.catalog import MAX_NAME, PRODUCT_COLUMNS, product_of, web_url_problem
from schemas.events import parse_event

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CAMERA = {
    "product_id": "cam-001",
    "name": "Aperture X100 Camera",
    "price": 899.0,
    "currency": "eur",
    "image_url": "https://cdn.example/cam.png",
    "url": "javascript:alert(1)",
    "category": "cameras",
}


def product_view(properties: dict, from_server: bool, raw: dict | None = None):
    event = {
        "event_id": "0d5ac3c6-8a47-4b8e-9a55-9b7a3b1f1c01",
        "name": "product_view",
        "timestamp": "2026-03-01T11:59:00Z",
        "anonymous_id": "anon-1",
        "properties": properties,
        **(raw or {}),
    }
    return parse_event(event, received_at=AT, from_server=from_server)


def test_a_store_backends_event_naming_a_product_makes_a_catalog_row():
    event = product_view(CAMERA, from_server=True)
    rows = event_rows(event)
    assert [table for table, _ in rows] == [EVENTS, PRODUCTS]
    row = dict(zip(PRODUCT_COLUMNS, rows[1][1], strict=True))
    assert row == {
        "product_id": "cam-001",
        "name": "Aperture X100 Camera",
        "price": 899.0,
        "currency": "EUR",
        "image_url": "https://cdn.example/cam.png",
        "url": "",  # not a web page: left out, not trusted
        "category": "cameras",
        "updated_at": int(datetime(2026, 3, 1, 11, 59, tzinfo=UTC).timestamp() * 1000),
        "source": "event",
    }
    # Through the processor and a batch: both rows, one record.
    batch = SinkBatch("telemetry.raw")
    batch.add(0, 7, process_event(event.to_json(), 0))
    assert len(batch.rows[EVENTS]) == len(batch.rows[PRODUCTS]) == 1
    assert batch.offsets == {0: (7, 7)}


def test_a_browser_event_never_changes_the_catalog_even_if_it_claims_a_server():
    assert catalog_row(product_view(CAMERA, from_server=False)) is None
    forged = product_view(CAMERA, from_server=False, raw={"from_server": True})
    assert forged.from_server is False and catalog_row(forged) is None


def test_an_event_without_a_name_leaves_the_entry_alone():
    assert catalog_row(product_view({"product_id": "cam-001", "price": 1.0}, True)) is None
    assert len(event_rows(product_view({"product_id": "cam-001"}, True))) == 1


@given(
    properties=st.dictionaries(
        st.sampled_from(
            ["product_id", "name", "price", "currency", "image_url", "url", "category"]
        ),
        st.none() | st.text(max_size=300) | st.floats() | st.integers() | st.booleans(),
    )
)
def test_any_properties_make_a_valid_bounded_entry_or_none(properties):
    product = product_of(properties)
    if product is None:
        return
    assert product.name and len(product.name) <= MAX_NAME
    assert product.price is None or 0 <= product.price <= 1e12
    assert product.currency is None or (len(product.currency) == 3 and product.currency.isupper())
    for url in (product.image_url, product.url):
        assert url is None or web_url_problem(url) is None
