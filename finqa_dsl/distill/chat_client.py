"""Many chat requests to an OpenAI-compatible endpoint, a bounded number at a time, each reply handed on as soon as
it arrives (so the caller can stream it to disk).

What is sent (:func:`request_fields`), read from the documented request schemas:

* ``max_completion_tokens`` carries the user's ``--max_tokens``. OpenAI's Chat Completions reference marks
  ``max_tokens`` deprecated in favour of ``max_completion_tokens`` and "not compatible with o-series models"
  (reasoning models, gpt-5 included, answer a request with ``max_tokens`` with HTTP 400 ``unsupported_parameter``);
  the limit counts visible and reasoning tokens. vLLM's ``ChatCompletionRequest`` takes it too (its
  ``max_tokens`` is deprecated the same way), and so does ``transformers serve`` (``max_completion_tokens`` first,
  else ``max_tokens``, in ``transformers/cli/serving/chat_completion.py``). One field, every endpoint.
* ``temperature`` only when the user sets one. Reasoning models accept only the default (1): any other value is
  HTTP 400 ``unsupported_value``. Left out, each server uses its own default (vLLM and ``transformers serve``: the
  model's generation config).
* ``reasoning_effort`` (``minimal|low|medium|high``) only when the user sets one. ``transformers serve`` ignores
  it with a warning; vLLM takes ``low|medium|high``; OpenAI's reasoning models take them all (``minimal``: gpt-5).
* ``extra_body``: any other field, merged into the JSON body last (so it can also replace a field above).

Retries: HTTP 408/409/429/5xx, timeouts and dropped connections are retried by the ``openai`` client itself
(exponential backoff with jitter, ``Retry-After`` honoured) up to ``max_retries`` times; a reply whose body is
not valid JSON, or that has no message, is retried by :func:`ask` the same number of times. A request that still
fails becomes a :class:`ChatReply` with ``error`` set and the server's message (first line): every request ends as
a reply or a named failure. A reply cut by the token limit (``finish_reason`` ``length``) is the failure
:data:`LENGTH`, not an answer. Other client errors (400, 401, 403, 404, 422, ...) do not heal by retrying: after
``abort_after`` identical ones the run stops sending (:attr:`ChatTotals.aborted`); what was not answered stays
pending for a rerun.

The API key is read from an environment variable and never stored, logged or written.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from finqa_dsl.core.errors import UsageError

MALFORMED_REPLY = "malformed_reply"
EMPTY_REPLY = "empty_reply"
TIMEOUT = "timeout"
CONNECTION = "connection"
LENGTH = "length"  # the reply reached the token limit: finish_reason "length"
REASONING_EFFORTS = ("minimal", "low", "medium", "high")
RETRIED_STATUSES = (408, 409, 429)  # client errors the openai client retries; other 4xx never heal
MESSAGE_CHARS = 500


@dataclass(frozen=True)
class ChatRequest:
    id: str
    messages: list[dict]


@dataclass(frozen=True)
class ChatReply:
    id: str
    text: str | None  # None when the request failed (a LENGTH failure keeps the cut text)
    error: str | None  # http_<status> | timeout | connection | malformed_reply | empty_reply | length
    prompt_tokens: int = 0
    completion_tokens: int = 0  # visible and reasoning tokens, as the usage reports them
    seconds: float = 0.0
    reasoning_tokens: int | None = None  # usage.completion_tokens_details.reasoning_tokens, where reported
    finish_reason: str | None = None
    message: str = ""  # a failure's message: the server's (first line), or the client's


@dataclass(frozen=True)
class Endpoint:
    """Where and how to ask: the ``--base_url``, ``--model`` and client knobs of a teacher run."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 10
    max_retries: int = 5
    timeout_s: float = 120.0
    max_tokens: int = 1024  # sent as max_completion_tokens
    temperature: float | None = None  # None: not sent (the server's default)
    extra_body: dict = field(default_factory=dict)
    reasoning_effort: str | None = None  # None: not sent
    abort_after: int = 3  # identical non-retryable client errors before the run stops sending

    def __post_init__(self):
        if self.reasoning_effort is not None and self.reasoning_effort not in REASONING_EFFORTS:
            raise UsageError(f"reasoning_effort {self.reasoning_effort!r} is not one of {', '.join(REASONING_EFFORTS)}")
        if self.abort_after < 1:
            raise UsageError(f"abort_after must be at least 1, got {self.abort_after}")
        if not isinstance(self.extra_body, dict):
            raise UsageError(f"extra_body must be a JSON object, got {type(self.extra_body).__name__}")


@dataclass
class ChatTotals:
    replies: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    seconds: float = 0.0
    failures_by_kind: Counter = field(default_factory=Counter)
    messages: dict[str, str] = field(default_factory=dict)  # kind -> the first message seen
    aborted: str | None = None  # why the run stopped sending, when it did

    def add(self, reply: ChatReply) -> None:
        self.replies += reply.error is None
        self.failures += reply.error is not None
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens
        self.reasoning_tokens += reply.reasoning_tokens or 0
        self.seconds += reply.seconds
        if reply.error is not None:
            self.failures_by_kind[reply.error] += 1
            self.messages.setdefault(reply.error, reply.message)


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


def request_fields(endpoint: Endpoint) -> dict[str, Any]:
    """The request's fields besides ``model`` and ``messages`` (see the module docstring): what the body holds."""
    fields: dict[str, Any] = {"max_completion_tokens": endpoint.max_tokens}
    if endpoint.temperature is not None:
        fields["temperature"] = endpoint.temperature
    if endpoint.reasoning_effort is not None:
        fields["reasoning_effort"] = endpoint.reasoning_effort
    return fields


async def ask(client, endpoint: Endpoint, request: ChatRequest) -> ChatReply:
    """One request, with the retries described in the module docstring."""
    import openai

    began = time.perf_counter()
    error, message = MALFORMED_REPLY, "the reply was not valid JSON"
    for attempt in range(endpoint.max_retries + 1):
        if attempt:
            await asyncio.sleep(min(8.0, 0.5 * 2 ** (attempt - 1)) * (0.75 + random.random() / 2))
        try:
            response = await client.chat.completions.create(
                model=endpoint.model, messages=request.messages, **request_fields(endpoint),
                extra_body=endpoint.extra_body or None)
        except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
            error, message = MALFORMED_REPLY, _first_line(str(exc)) or "the reply was not valid JSON"
            continue
        except openai.APITimeoutError:
            return _failed(request, TIMEOUT, began, f"no reply within {endpoint.timeout_s:g} s")
        except openai.APIConnectionError as exc:
            return _failed(request, CONNECTION, began, _first_line(str(exc.__cause__ or exc)))
        except openai.APIStatusError as status:
            return _failed(request, f"http_{status.status_code}", began, server_message(status))
        choices = getattr(response, "choices", None)
        choice = choices[0] if choices else None
        text = choice.message.content if choice is not None and choice.message else None
        usage = _usage(response)
        finish_reason = getattr(choice, "finish_reason", None)
        if finish_reason == "length":
            reasoning = usage["reasoning_tokens"]
            return ChatReply(request.id, text, LENGTH, **usage, seconds=time.perf_counter() - began,
                             finish_reason=finish_reason,
                             message=f"the reply reached the token limit (max_completion_tokens="
                                     f"{endpoint.max_tokens}, completion tokens {usage['completion_tokens']}"
                                     + (f", reasoning tokens {reasoning}" if reasoning is not None else "") + ")")
        if not text:
            error, message = EMPTY_REPLY, f"the reply had no content (finish_reason {finish_reason!r})"
            continue
        return ChatReply(request.id, text, None, **usage, seconds=time.perf_counter() - began,
                         finish_reason=finish_reason)
    return _failed(request, error, began, message)


def _usage(response) -> dict[str, Any]:
    usage = getattr(response, "usage", None)
    details = getattr(usage, "completion_tokens_details", None)
    reasoning = getattr(details, "reasoning_tokens", None)
    return {"prompt_tokens": getattr(usage, "prompt_tokens", 0) or 0,
            "completion_tokens": getattr(usage, "completion_tokens", 0) or 0,
            "reasoning_tokens": reasoning if isinstance(reasoning, int) else None}


def server_message(status) -> str:
    """The first line of the server's own message in an error reply: OpenAI's ``{"error": {"message"}}``,
    FastAPI's ``{"detail"}`` (``transformers serve``, vLLM), else the body or the client's text."""
    body = getattr(status, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            inner = inner.get("message", inner.get("detail", inner))
        text = inner if isinstance(inner, str) else json.dumps(inner, ensure_ascii=False)
    elif isinstance(body, str) and body.strip():
        text = body
    else:
        text = getattr(status, "message", "") or str(status)
    return _first_line(text)


def _first_line(text: str) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= MESSAGE_CHARS else line[:MESSAGE_CHARS - 3] + "..."


def _failed(request: ChatRequest, error: str, began: float, message: str) -> ChatReply:
    return ChatReply(request.id, None, error, seconds=time.perf_counter() - began, message=message)


def never_heals(reply: ChatReply) -> bool:
    """A client error (4xx) that the same request will meet again: a retry, or more requests alike, cannot help."""
    if reply.error is None or not reply.error.startswith("http_4"):
        return False
    return int(reply.error.removeprefix("http_")) not in RETRIED_STATUSES


async def stream_replies(requests: Sequence[ChatRequest], endpoint: Endpoint,
                         totals: ChatTotals | None = None) -> AsyncIterator[ChatReply]:
    """Yield one :class:`ChatReply` per request in completion order, at most ``endpoint.concurrency`` in flight.

    After ``endpoint.abort_after`` identical replies that :func:`never_heals` (same status, same message), no
    further request is sent (those in flight finish and are yielded) and ``totals.aborted`` says why."""
    client = make_client(endpoint)
    slots = asyncio.Semaphore(endpoint.concurrency)
    identical: Counter[tuple[str, str]] = Counter()
    stop: list[str] = []  # why no more requests are sent, once they are not

    async def bounded(request: ChatRequest) -> ChatReply | None:
        async with slots:
            if stop:
                return None
            reply = await ask(client, endpoint, request)
            if never_heals(reply):  # counted before the slot is free, so no request starts after the last one
                identical[reply.error, reply.message] += 1
                if identical[reply.error, reply.message] >= endpoint.abort_after and not stop:
                    stop.append(f"stopped after {endpoint.abort_after} identical {reply.error} errors (retrying "
                                f"cannot help): {reply.message}")
            return reply

    tasks = [asyncio.ensure_future(bounded(request)) for request in requests]
    try:
        for finished in asyncio.as_completed(tasks):  # once stopped, only the requests already sent finish
            reply = await finished
            if reply is not None:
                yield reply
        if stop and totals is not None:
            totals.aborted = stop[0]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()


def ask_all(requests: Sequence[ChatRequest], endpoint: Endpoint,
            on_reply: Callable[[ChatReply], None]) -> ChatTotals:
    """Send every request, call ``on_reply`` for each reply as it arrives (with a progress bar showing the
    token totals), and return the totals."""
    totals = ChatTotals()

    async def run() -> None:
        with tqdm(total=len(requests), unit="req", desc="teacher") as progress:
            replies = stream_replies(requests, endpoint, totals)
            try:
                async for reply in replies:
                    on_reply(reply)
                    totals.add(reply)
                    progress.update(1)
                    progress.set_postfix(failed=totals.failures,
                                         tokens=totals.prompt_tokens + totals.completion_tokens)
            finally:
                await replies.aclose()

    asyncio.run(run())
    return totals
