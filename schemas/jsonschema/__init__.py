"""JSON Schema of the event contract, generated from the pydantic models.

Storefronts written in other languages validate against these files; the
models in ``schemas.events`` stay the single source of truth. Regenerate with
``python -m schemas.jsonschema`` (a test fails when the files drift).
"""

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from schemas.events import PROPERTY_MODELS, SERVER_EVENTS, Event, ShortStr

SCHEMA_DIR = Path(__file__).parent
DIALECT = "https://json-schema.org/draft/2020-12/schema"
ENVELOPE = "envelope"


def _title(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) + "Event"


def event_model(name: str) -> type[BaseModel]:
    """The envelope narrowed to one standard event: its name and its properties' model."""
    fields: dict[str, Any] = {
        "name": (Literal[name], Field(description=f"Always {name!r} for this event.")),
        "properties": (PROPERTY_MODELS[name], ...),
    }
    if name == "identify":
        fields["user_id"] = (ShortStr, Field(description="The shopper now known."))
    return create_model(_title(name), __base__=Event, **fields)


def _document(model: type[BaseModel], description: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {"$schema": DIALECT, **schema, "description": description}


def build_schemas() -> dict[str, dict[str, Any]]:
    """File stem → JSON Schema document: the envelope and one per standard event."""
    documents = {
        ENVELOPE: _document(
            Event,
            "Any event: a standard one (see the file named after it) or a custom one "
            "whose name matches the pattern and whose properties are free.",
        )
    }
    for name in sorted(PROPERTY_MODELS):
        sender = "a store backend with a server key" if name in SERVER_EVENTS else "any client"
        documents[name] = _document(
            event_model(name), f"The standard event {name!r}, sent by {sender}."
        )
    return documents


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every document and remove stale ones; returns the files written."""
    documents = build_schemas()
    for stale in directory.glob("*.json"):
        if stale.stem not in documents:
            stale.unlink()
    written = []
    for stem, document in documents.items():
        path = directory / f"{stem}.json"
        path.write_text(render(document), encoding="utf-8")
        written.append(path)
    return written
