"""An optional language model behind ``POST /v1/segments/parse``, for phrases the
deterministic parser (schemas/segment_phrases.py) cannot read.

Off unless ``INTENTFLOW_SEGMENT_LLM_URL`` names an OpenAI-compatible
chat-completions endpoint. Whatever it answers is validated as a rule tree
(schemas/segments.py) exactly like a client's, so it can propose rules but
never SQL. Tests plug in a fake through the ``rule_suggester`` dependency.
"""

from typing import Annotated, Any, Protocol

import httpx
import orjson
from fastapi import Depends

from api.deps import SettingsDep
from schemas.segments import FIELDS, OPERATORS


class RuleSuggester(Protocol):
    async def suggest(self, text: str) -> Any:
        """A rule tree (JSON data) for ``text``; raises on any failure."""
        ...


def _instructions() -> str:
    fields = "\n".join(
        f"- {name} ({spec.type}; operators {', '.join(sorted(OPERATORS[spec.type]))})"
        f"{': ' + ', '.join(spec.choices) if spec.choices else ''}"
        for name, spec in FIELDS.items()
    )
    return (
        "Turn the user's description of a customer segment into JSON only: a group "
        '{"op": "AND"|"OR", "rules": [...]} of conditions {"field", "op", "value"} or '
        "nested groups. Times are ISO-8601 with a zone; inactive_days and within_days "
        "take whole days; in/not_in take lists; between takes [low, high]. Fields:\n" + fields
    )


class ChatCompletionsSuggester:
    def __init__(self, url: str, model: str, api_key: str | None, timeout_s: float) -> None:
        self.url, self.model, self.api_key, self.timeout_s = url, model, api_key, timeout_s

    async def suggest(self, text: str) -> Any:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {
            "model": self.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": _instructions()},
                {"role": "user", "content": text},
            ],
        }
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            response = await client.post(self.url, json=body, headers=headers)
            response.raise_for_status()
        return orjson.loads(response.json()["choices"][0]["message"]["content"])


def rule_suggester(settings: SettingsDep) -> RuleSuggester | None:
    if not settings.segment_llm_url:
        return None
    key = settings.segment_llm_api_key
    return ChatCompletionsSuggester(
        settings.segment_llm_url,
        settings.segment_llm_model,
        key.get_secret_value() if key else None,
        settings.segment_llm_timeout_s,
    )


SuggesterDep = Annotated[RuleSuggester | None, Depends(rule_suggester)]
