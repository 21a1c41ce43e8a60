"""finqa_dsl.distill.chat_client against a real OpenAI-compatible server (`transformers serve`, the default
model, offline, on loopback) and against a local server that misbehaves in each way a real endpoint can."""

from __future__ import annotations

import pytest
from faulty_server import CLIENT_TIMEOUT_S, SCRIPTS, FaultyServer
from reasoning_server import ANSWER_TOKENS, EFFORTS, ReasoningServer

from finqa_dsl.core.errors import UsageError
from finqa_dsl.distill.chat_client import (
    CONNECTION,
    LENGTH,
    MALFORMED_REPLY,
    TIMEOUT,
    ChatRequest,
    Endpoint,
    ask_all,
)

KEY_ENV = "FINQA_TEST_TEACHER_KEY"
SECRET = "sk-test-never-written-0123456789"


@pytest.fixture
def faulty(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    with FaultyServer() as server:
        yield server


@pytest.fixture
def reasoning(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    with ReasoningServer() as server:
        yield server


def _ask(server, n: int = 4, **overrides):
    requests = [ChatRequest(f"r{i}", [{"role": "user", "content": f"question {i}"}]) for i in range(n)]
    replies = []
    totals = ask_all(requests, _endpoint(server.url, **{"max_tokens": 256, **overrides}), replies.append)
    return {reply.id: reply for reply in replies}, totals


def _endpoint(url: str, **overrides) -> Endpoint:
    settings = {"base_url": url, "model": "m", "api_key_env": KEY_ENV, "concurrency": 3, "max_retries": 3,
                "timeout_s": CLIENT_TIMEOUT_S, "max_tokens": 16}
    return Endpoint(**{**settings, **overrides})


def test_every_request_ends_as_a_reply_or_a_named_failure(faulty):
    requests = [ChatRequest(f"id-{case}", [{"role": "user", "content": case}]) for case in SCRIPTS]
    replies = []
    totals = ask_all(requests, _endpoint(faulty.url), replies.append)
    by_id = {reply.id: reply for reply in replies}
    assert len(replies) == len(by_id) == len(SCRIPTS)  # each request once, none lost
    for case in ("ok", "rate_limited", "server_error", "slow", "malformed", "dropped"):
        assert by_id[f"id-{case}"].text == f"ans = 1  # {case}", case
        assert by_id[f"id-{case}"].error is None
    assert by_id["id-always_500"].error == "http_500"
    assert by_id["id-always_malformed"].error == MALFORMED_REPLY
    assert by_id["id-always_slow"].error == TIMEOUT
    assert by_id["id-always_dropped"].error == CONNECTION
    assert faulty.attempts["server_error"] == 3 and faulty.attempts["always_500"] == 4  # 1 + max_retries
    assert faulty.attempts["always_malformed"] == 4
    assert (totals.replies, totals.failures) == (6, 4)
    assert (totals.prompt_tokens, totals.completion_tokens) == (6 * 7, 6 * 3)
    assert faulty.max_in_flight <= 3
    assert faulty.authorizations == {f"Bearer {SECRET}"}


def test_a_missing_key_variable_is_a_usage_error_naming_it(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(UsageError, match=KEY_ENV):
        ask_all([ChatRequest("a", [{"role": "user", "content": "ok"}])], _endpoint("http://127.0.0.1:9/v1"),
                lambda reply: None)


@pytest.mark.slow
def test_a_real_local_server_answers_every_request_with_token_counts(served_default_model, monkeypatch):
    url, model = served_default_model
    monkeypatch.setenv(KEY_ENV, "none")
    questions = ["What is 2 + 3?", "Write Python that sets ans to 7 * 6.", "Is 5 greater than 3?"]
    requests = [ChatRequest(str(i), [{"role": "user", "content": q}]) for i, q in enumerate(questions)]
    replies = []
    totals = ask_all(requests, _endpoint(f"{url}/v1", model=model, concurrency=2, timeout_s=120, max_tokens=24),
                     replies.append)
    assert sorted(reply.id for reply in replies) == ["0", "1", "2"]
    assert all(reply.error in (None, LENGTH) and reply.text for reply in replies)  # 24 tokens may cut a reply
    assert all(reply.finish_reason in ("stop", "length") for reply in replies)
    assert totals.prompt_tokens > 3 * 10 and 0 < totals.completion_tokens <= 3 * 24


def test_a_reasoning_model_gets_max_completion_tokens_no_temperature_and_reports_reasoning_tokens(reasoning):
    replies, totals = _ask(reasoning, reasoning_effort="low", extra_body={"seed": 7})
    assert all(reply.error is None and "ans = 1" in reply.text for reply in replies.values())
    assert all(reply.finish_reason == "stop" and reply.reasoning_tokens == EFFORTS["low"] for reply in replies.values())
    assert totals.reasoning_tokens == 4 * EFFORTS["low"]
    assert totals.completion_tokens == 4 * (EFFORTS["low"] + ANSWER_TOKENS)
    body = reasoning.bodies[0]
    assert body["max_completion_tokens"] == 256 and body["reasoning_effort"] == "low" and body["seed"] == 7
    assert "max_tokens" not in body and "temperature" not in body


def test_a_refused_field_is_a_named_400_with_the_servers_message_and_stops_the_run(reasoning):
    replies, totals = _ask(reasoning, n=20, temperature=0.0, concurrency=1)
    assert len(replies) == 3 == len(reasoning.bodies)  # three identical 400s, then nothing more is sent
    assert {reply.error for reply in replies.values()} == {"http_400"}
    message = next(iter(replies.values())).message
    assert message == ("Unsupported value: 'temperature' does not support 0.0 with this model. Only the default (1) "
                       "value is supported.")
    assert totals.failures_by_kind == {"http_400": 3} and totals.messages["http_400"] == message
    assert "3 identical http_400" in totals.aborted and message in totals.aborted
    replies, totals = _ask(reasoning, n=40, temperature=0.0, concurrency=5)
    assert len(replies) == len(reasoning.bodies) - 3 <= 3 + 4  # those in flight finish and are kept, no more start
    assert totals.failures_by_kind == {"http_400": len(replies)} and totals.aborted
    replies, totals = _ask(reasoning, n=2, extra_body={"max_tokens": 64})  # e.g. a client that sends the old field
    assert {reply.message for reply in replies.values()} == {
        "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."}
    assert totals.aborted is None  # fewer than three


def test_a_reply_cut_by_the_token_limit_is_the_length_failure_not_an_answer(reasoning):
    replies, totals = _ask(reasoning, n=2, max_tokens=EFFORTS["medium"] + 1)
    assert {reply.error for reply in replies.values()} == {LENGTH}
    reply = replies["r0"]
    assert reply.finish_reason == "length" and reply.reasoning_tokens == EFFORTS["medium"]
    assert reply.completion_tokens == EFFORTS["medium"] + 1 and "reasoning tokens 64" in reply.message
    assert totals.failures_by_kind == {LENGTH: 2} and totals.aborted is None


def test_a_bad_reasoning_effort_or_extra_body_is_a_usage_error():
    with pytest.raises(UsageError, match="reasoning_effort 'extreme'"):
        _endpoint("http://127.0.0.1:9/v1", reasoning_effort="extreme")
    with pytest.raises(UsageError, match="extra_body must be a JSON object"):
        _endpoint("http://127.0.0.1:9/v1", extra_body=[1])
    with pytest.raises(UsageError, match="abort_after must be at least 1"):
        _endpoint("http://127.0.0.1:9/v1", abort_after=0)
