"""Many chat requests to an OpenAI-compatible endpoint, a bounded number at a time, each reply handed on as soon as
it arrives (so the caller can stream it to disk).

Retries: HTTP 408/409/429/5xx, timeouts and dropped connections are retried by the ``openai`` client itself
(exponential backoff with jitter, ``Retry-After`` honoured) up to ``max_retries`` times; a reply whose body is
not valid JSON, or that has no message, is retried by :func:`ask` the same number of times. A request that still
fails becomes a :class:`ChatReply` with ``error`` set: every request ends as a reply or a named failure.
The API key is read from an environment variable and never stored, logged or written.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from finqa_dsl.core.errors import UsageError

MALFORMED_REPLY = "malformed_reply"
EMPTY_REPLY = "empty_reply"
TIMEOUT = "timeout"
CONNECTION = "connection"


@dataclass(frozen=True)
class ChatRequest:
    id: str
    messages: list[dict]


@dataclass(frozen=True)
class ChatReply:
    id: str
    text: str | None  # None when the request failed
    error: str | None  # http_<status> | timeout | connection | malformed_reply | empty_reply
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Endpoint:
    """Where and how to ask: the ``--base_url``, ``--model`` and client knobs of a teacher run."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 10
    max_retries: int = 5
    timeout_s: float = 120.0
    max_tokens: int = 1024
    temperature: float = 0.0
    extra_body: dict = field(default_factory=dict)


@dataclass
class ChatTotals:
    replies: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, reply: ChatReply) -> None:
        self.replies += reply.error is None
        self.failures += reply.error is not None
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens


def api_key(endpoint: Endpoint) -> str:
    """The key from ``endpoint.api_key_env``; :class:`UsageError` naming the variable when it is unset."""
    key = os.environ.get(endpoint.api_key_env)
    if not key:
        raise UsageError(f"environment variable {endpoint.api_key_env} is not set: export it with your API key "
                         "(any non-empty value for a local server without authentication), or name another "
                         "variable with --api_key_env.")
    return key


def make_client(endpoint: Endpoint):
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=endpoint.base_url, api_key=api_key(endpoint), max_retries=endpoint.max_retries,
                       timeout=endpoint.timeout_s)


async def ask(client, endpoint: Endpoint, request: ChatRequest) -> ChatReply:
    """One request, with the retries described in the module docstring."""
    import openai

    began = time.perf_counter()
    error = MALFORMED_REPLY
    for attempt in range(endpoint.max_retries + 1):
        if attempt:
            await asyncio.sleep(min(8.0, 0.5 * 2 ** (attempt - 1)) * (0.75 + random.random() / 2))
        try:
            response = await client.chat.completions.create(
                model=endpoint.model, messages=request.messages, max_tokens=endpoint.max_tokens,
                temperature=endpoint.temperature, extra_body=endpoint.extra_body or None)
        except (json.JSONDecodeError, openai.APIResponseValidationError):
            error = MALFORMED_REPLY
            continue
        except openai.APITimeoutError:
            return _failed(request, TIMEOUT, began)
        except openai.APIConnectionError:
            return _failed(request, CONNECTION, began)
        except openai.APIStatusError as status:
            return _failed(request, f"http_{status.status_code}", began)
        choices = getattr(response, "choices", None)
        text = choices[0].message.content if choices and choices[0].message else None
        if text is None:
            error = EMPTY_REPLY
            continue
        usage = response.usage
        return ChatReply(request.id, text, None, getattr(usage, "prompt_tokens", 0) or 0,
                         getattr(usage, "completion_tokens", 0) or 0, time.perf_counter() - began)
    return _failed(request, error, began)


def _failed(request: ChatRequest, error: str, began: float) -> ChatReply:
    return ChatReply(request.id, None, error, seconds=time.perf_counter() - began)


async def stream_replies(requests: Sequence[ChatRequest], endpoint: Endpoint) -> AsyncIterator[ChatReply]:
    """Yield one :class:`ChatReply` per request in completion order, at most ``endpoint.concurrency`` in flight."""
    client = make_client(endpoint)
    slots = asyncio.Semaphore(endpoint.concurrency)

    async def bounded(request: ChatRequest) -> ChatReply:
        async with slots:
            return await ask(client, endpoint, request)

    tasks = [asyncio.ensure_future(bounded(request)) for request in requests]
    try:
        for finished in asyncio.as_completed(tasks):
            yield await finished
    finally:
        for task in tasks:
            task.cancel()
        await client.close()


def ask_all(requests: Sequence[ChatRequest], endpoint: Endpoint,
            on_reply: Callable[[ChatReply], None]) -> ChatTotals:
    """Send every request, call ``on_reply`` for each reply as it arrives (with a progress bar showing the
    token totals), and return the totals."""
    totals = ChatTotals()

    async def run() -> None:
        with tqdm(total=len(requests), unit="req", desc="teacher") as progress:
            async for reply in stream_replies(requests, endpoint):
                on_reply(reply)
                totals.add(reply)
                progress.update(1)
                progress.set_postfix(failed=totals.failures, tokens=totals.prompt_tokens + totals.completion_tokens)

    asyncio.run(run())
    return totals
