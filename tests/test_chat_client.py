"""finqa_dsl.distill.chat_client against a real OpenAI-compatible server (`transformers serve`, the default
model, offline, on loopback) and against a local server that misbehaves in each way a real endpoint can."""

from __future__ import annotations

import pytest
from faulty_server import SCRIPTS, FaultyServer

from finqa_dsl.core.errors import UsageError
from finqa_dsl.distill.chat_client import (
    CONNECTION,
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
    server = FaultyServer()
    yield server
    server.close()


def _endpoint(url: str, **overrides) -> Endpoint:
    settings = {"base_url": url, "model": "m", "api_key_env": KEY_ENV, "concurrency": 3, "max_retries": 3,
                "timeout_s": 0.7, "max_tokens": 16}
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
    assert all(reply.error is None and reply.text for reply in replies)
    assert totals.prompt_tokens > 3 * 10 and 0 < totals.completion_tokens <= 3 * 24
