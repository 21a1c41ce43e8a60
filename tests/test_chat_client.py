"""finqa_dsl.distill.chat_client against a real OpenAI-compatible server (`transformers serve`, the default
model, offline, on loopback) and against a local server that misbehaves in each way a real endpoint can."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from finqa_dsl.core.errors import UsageError
from finqa_dsl.distill.chat_client import (
    CONNECTION,
    MALFORMED_REPLY,
    TIMEOUT,
    ChatRequest,
    Endpoint,
    ask_all,
)
from finqa_dsl.models.default_model import DefaultModelUnavailable, default_model_path

KEY_ENV = "FINQA_TEST_TEACHER_KEY"
SECRET = "sk-test-never-written-0123456789"

# case -> what the server does on each attempt; the last entry repeats.
SCRIPTS = {
    "ok": ["ok"],
    "rate_limited": ["429", "ok"],
    "server_error": ["500", "500", "ok"],
    "slow": ["sleep", "ok"],
    "malformed": ["garbage", "ok"],
    "dropped": ["drop", "ok"],
    "always_500": ["500"],
    "always_malformed": ["garbage"],
    "always_slow": ["sleep"],
    "always_dropped": ["drop"],
}


class FaultyServer:
    """A chat-completions endpoint on loopback that follows SCRIPTS per case, counting attempts."""

    def __init__(self):
        self.attempts: Counter[str] = Counter()
        self.in_flight = self.max_in_flight = 0
        self.authorizations: set[str] = set()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                case = body["messages"][-1]["content"]
                with outer.lock:
                    step = SCRIPTS[case][min(outer.attempts[case], len(SCRIPTS[case]) - 1)]
                    outer.attempts[case] += 1
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                    outer.authorizations.add(self.headers.get("Authorization", ""))
                try:
                    time.sleep(0.05)
                    self._respond(step, case)
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

            def _respond(self, step: str, case: str):
                if step == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if step == "sleep":
                    time.sleep(1.5)
                    step = "ok"
                if step in ("429", "500"):
                    payload = json.dumps({"error": {"message": step}}).encode()
                    self.send_response(int(step))
                    self.send_header("Retry-After", "0")
                else:
                    payload = (b'{"id": "x", "choices": [ nope' if step == "garbage" else json.dumps({
                        "id": "x", "object": "chat.completion", "created": 0, "model": "m",
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": f"ans = 1  # {case}"}}],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}).encode())
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served_default_model():
    """`transformers serve` of the default model on loopback, offline, on CPU."""
    try:
        model = str(default_model_path())
    except DefaultModelUnavailable as error:
        pytest.skip(f"default model unavailable: {error}")
    port = _free_port()
    command = [os.path.join(os.path.dirname(sys.executable), "transformers"), "serve", model,
               "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    server = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1):
                    break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"transformers serve exited with {server.returncode}")
                time.sleep(0.5)
        else:
            pytest.fail("transformers serve did not answer /health within 120 s")
        yield url, model
    finally:
        server.kill()
        server.wait()


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
