"""The optional language model: one OpenAI-compatible chat-completions client.

Off unless ``INTENTFLOW_SEGMENT_LLM_URL`` names a chat-completions endpoint
(``INTENTFLOW_SEGMENT_LLM_MODEL``, ``_API_KEY``, ``_TIMEOUT_S``; the names date from
its first use). Two routes ask it, and only for proposals a person or a validator
then judges: ``POST /v1/segments/parse`` for a phrase the deterministic parser
cannot read (validated as a rule tree, never SQL), and
``POST /v1/templates/{kind}/drafts`` for message variants (validated as rules-file
variants and applied only by an operator pasting them into the rules file). Without
it nothing else changes. Every failure of the model is one ``ModelFailed`` with a
reason that holds no prompt and no answer.
"""

from typing import Annotated, Any

import httpx
import orjson
from fastapi import Depends

from api.deps import SettingsDep


class ModelFailed(Exception):
    """The model did not answer JSON in time: its reason, fit to show a caller."""


class ChatModel:
    def __init__(self, url: str, model: str, api_key: str | None, timeout_s: float) -> None:
        self.url, self.model, self.api_key, self.timeout_s = url, model, api_key, timeout_s

    async def ask_json(self, instructions: str, text: str, temperature: float = 0.0) -> Any:
        """The model's answer to ``text`` under ``instructions``, as JSON data
        (``response_format: json_object``); raises ``ModelFailed``."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {
            "model": self.model,
            "temperature": temperature,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": instructions},
                {"role": "user", "content": text},
            ],
        }
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                response = await client.post(self.url, json=body, headers=headers)
        except httpx.TimeoutException:
            raise ModelFailed(f"no answer within {self.timeout_s:g}s") from None
        except httpx.HTTPError as exc:
            raise ModelFailed(f"unreachable ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise ModelFailed(f"answered HTTP {response.status_code}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
            return orjson.loads(content)
        except (ValueError, KeyError, IndexError, TypeError):
            raise ModelFailed("answered no JSON message") from None


def language_model(settings: SettingsDep) -> ChatModel | None:
    """The configured model, or None: the feature is off."""
    if not settings.segment_llm_url:
        return None
    key = settings.segment_llm_api_key
    return ChatModel(
        settings.segment_llm_url,
        settings.segment_llm_model,
        key.get_secret_value() if key else None,
        settings.segment_llm_timeout_s,
    )


LanguageModelDep = Annotated[ChatModel | None, Depends(language_model)]
