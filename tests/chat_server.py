"""A stand-in for an OpenAI-compatible chat-completions API, served on a real port.

It speaks only what the real API does: ``POST /v1/chat/completions`` with ``model``,
``messages`` and ``response_format``, answered as a chat completion or as an error in
OpenAI's shape (``{"error": {"message", "type", "code"}}``), checking what the real one
checks (a bearer key; ``json_object`` needs the word JSON in the messages). What the
"model" answers is the test's: ``ChatServer.reply`` maps the request to the assistant's
content, or to an ``Error``. ``hold`` keeps every answer back until the test sets it:
a model slower than the client's timeout, without a sleep.
"""

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support import serving

PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Error:
    status: int
    message: str
    type: str = "server_error"


Reply = Callable[[dict[str, Any]], "str | Error"]


@dataclass
class ChatServer:
    api_key: str
    reply: Reply = lambda body: "{}"
    requests: list[dict[str, Any]] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def __post_init__(self) -> None:
        self.hold.set()

    @property
    def endpoint(self) -> str:
        return self.url + PATH


def _error(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status)


def chat_app(server: ChatServer) -> FastAPI:
    app = FastAPI()

    @app.post(PATH)
    async def completions(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {server.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "We could not parse the JSON body.", "invalid_request_error")
        messages = body.get("messages") if isinstance(body, dict) else None
        if not body.get("model") or not isinstance(messages, list) or not messages:
            return _error(400, "model and messages are required.", "invalid_request_error")
        said = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        wants_json = (body.get("response_format") or {}).get("type") == "json_object"
        if wants_json and "json" not in said.lower():
            return _error(
                400,
                "'messages' must contain the word 'json' in some form, "
                "to use 'response_format' of type 'json_object'.",
                "invalid_request_error",
            )
        server.requests.append(body)
        await asyncio.to_thread(server.hold.wait, 30)
        answer = server.reply(body)
        if isinstance(answer, Error):
            return _error(answer.status, answer.message, answer.type)
        return JSONResponse(
            {
                "id": f"chatcmpl-{len(server.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }
        )

    return app


def model_settings(server: ChatServer, timeout_s: float) -> dict[str, Any]:
    """The API's settings that make ``server`` its language model (api/llm.py)."""
    return {
        "segment_llm_url": server.endpoint,
        "segment_llm_model": "stand-in-1",
        "segment_llm_api_key": server.api_key,
        "segment_llm_timeout_s": timeout_s,
    }


@contextmanager
def running_chat_server(api_key: str = "sk-stand-in") -> Iterator[ChatServer]:
    """The stand-in on a free loopback port; its ``endpoint`` is what the API is given."""
    server = ChatServer(api_key)
    with serving(chat_app(server), name="chat") as url:
        server.url = url
        try:
            yield server
        finally:
            server.hold.set()  # a held answer must not keep the server from stopping
