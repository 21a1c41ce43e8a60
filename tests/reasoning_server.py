"""A chat-completions endpoint on loopback that keeps a reasoning model's request rules, as OpenAI's API states
and answers them for gpt-5 and the o-series:

* ``max_tokens`` is refused: HTTP 400, ``unsupported_parameter`` ("Use 'max_completion_tokens' instead");
* ``temperature`` other than the default 1 is refused: HTTP 400, ``unsupported_value``;
* ``reasoning_effort`` must be one of minimal, low, medium, high;
* the reply spends reasoning tokens first (``usage.completion_tokens_details.reasoning_tokens``); when
  ``max_completion_tokens`` leaves no room for the answer after them, the content is empty and ``finish_reason`` is
  ``length``, as OpenAI's reasoning models do.

The error body has OpenAI's shape: ``{"error": {"message", "type": "invalid_request_error", "param", "code"}}``.
Every request body it received is kept in ``bodies``.
"""

from __future__ import annotations

import json
import threading

from loopback import LoopbackServer, QuietHandler

EFFORTS = {"minimal": 8, "low": 32, "medium": 64, "high": 128}  # reasoning tokens spent per request
ANSWER_TOKENS = 12
PROMPT_TOKENS = 100


def _error(message: str, param: str, code: str) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def check(body: dict) -> dict | None:
    """The error body a reasoning model answers ``body`` with, or None when it takes it."""
    if "max_tokens" in body:
        return _error("Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                      "'max_completion_tokens' instead.", "max_tokens", "unsupported_parameter")
    if "temperature" in body and body["temperature"] != 1:
        return _error(f"Unsupported value: 'temperature' does not support {body['temperature']} with this model. "
                      "Only the default (1) value is supported.", "temperature", "unsupported_value")
    effort = body.get("reasoning_effort", "medium")
    if effort not in EFFORTS:
        return _error(f"Invalid value: '{effort}'. Supported values are: 'minimal', 'low', 'medium', and 'high'.",
                      "reasoning_effort", "invalid_value")
    return None


class ReasoningServer(LoopbackServer):
    """``answer(body) -> str`` writes the visible reply of a request that keeps the rules."""

    def __init__(self, answer=lambda body: "###Python\nans = 1\n###End Python"):
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.bodies.append(body)
                error = check(body)
                if error is not None:
                    self._send(400, error)
                    return
                reasoning = EFFORTS[body.get("reasoning_effort", "medium")]
                limit = body.get("max_completion_tokens")
                cut = limit is not None and reasoning + ANSWER_TOKENS > limit
                used = limit if cut else reasoning + ANSWER_TOKENS
                self._send(200, {
                    "id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "length" if cut else "stop",
                                 "message": {"role": "assistant", "content": "" if cut else answer(body),
                                             "refusal": None}}],
                    "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": used,
                              "total_tokens": PROMPT_TOKENS + used,
                              "completion_tokens_details": {"reasoning_tokens": min(reasoning, used)}}})

            def _send(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler, "/v1")
