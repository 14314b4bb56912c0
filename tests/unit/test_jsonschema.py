"""The checked-in JSON Schema files are exactly what the models generate."""

import json

from schemas.events import PROPERTY_MODELS
from schemas.jsonschema import SCHEMA_DIR, build_schemas, render


def test_checked_in_json_schema_matches_the_models():
    documents = build_schemas()
    on_disk = {path.stem: path.read_text(encoding="utf-8") for path in SCHEMA_DIR.glob("*.json")}
    assert set(on_disk) == set(documents), "run: python -m schemas.jsonschema"
    stale = [stem for stem, document in documents.items() if on_disk[stem] != render(document)]
    assert not stale, f"schema drift in {stale}; run: python -m schemas.jsonschema"


def test_one_schema_per_standard_event_plus_the_envelope():
    documents = build_schemas()
    assert set(documents) == {"envelope", *PROPERTY_MODELS}
    for name in PROPERTY_MODELS:
        document = json.loads(render(documents[name]))
        assert document["properties"]["name"]["const"] == name
        assert "properties" in document["required"]
    assert "user_id" in documents["identify"]["required"]
