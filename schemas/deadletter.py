"""Dead-letter records: what could not be processed, why, and the original bytes."""

import base64
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True)

    source_topic: str
    partition: int
    offset: int
    reason: str
    errors: list[dict[str, Any]] = []
    # The record exactly as it was read, so nothing is lost and it can be re-driven.
    key_b64: str | None = None
    value_b64: str

    @classmethod
    def of(
        cls,
        *,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        reason: str,
        errors: list[dict[str, Any]] | None = None,
    ) -> "DeadLetter":
        return cls(
            source_topic=topic,
            partition=partition,
            offset=offset,
            reason=reason,
            errors=errors or [],
            key_b64=base64.b64encode(key).decode() if key is not None else None,
            value_b64=base64.b64encode(value or b"").decode(),
        )

    def original_value(self) -> bytes:
        return base64.b64decode(self.value_b64)

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))
