"""A chat-completions endpoint on loopback that misbehaves on purpose (429, 500, slow, malformed JSON, dropped
connections), per request case, counting attempts: the fault cases a real endpoint shows now and then."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import Counter

from loopback import LoopbackServer, QuietHandler

# case -> what the server does on each attempt; the last entry repeats.
SLOW_S = 6.0  # a slow reply: far past the clients' timeout (CLIENT_TIMEOUT_S), however loaded the machine
CLIENT_TIMEOUT_S = 2.0  # the timeout tests give the client: far above a loopback reply's time under load
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


class FaultyServer(LoopbackServer):
    """A chat-completions endpoint on loopback that follows SCRIPTS per case, counting attempts."""

    def __init__(self, case_of=lambda body: body["messages"][-1]["content"]):
        self.attempts: Counter[str] = Counter()
        self.in_flight = self.max_in_flight = 0
        self.authorizations: set[str] = set()
        self.lock = threading.Lock()
        outer = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _client_left_within(self, seconds: float) -> bool:
                """Wait up to ``seconds``; True as soon as the client closes its connection."""
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    if select.select([self.connection], [], [], 0.05)[0]:
                        try:
                            if not self.connection.recv(1, socket.MSG_PEEK):
                                return True
                        except OSError:
                            return True
                return False

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                case = case_of(body)
                with outer.lock:
                    step = SCRIPTS[case][min(outer.attempts[case], len(SCRIPTS[case]) - 1)]
                    outer.attempts[case] += 1
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                    outer.authorizations.add(self.headers.get("Authorization", ""))
                try:
                    time.sleep(0.05)
                    self._respond(step, case)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a slow reply: that is the point of the slow cases
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

            def _respond(self, step: str, case: str):
                if step == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if step == "sleep":
                    if self._client_left_within(SLOW_S):
                        return  # the client timed out: this request is no longer in flight
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

        super().__init__(Handler, "/v1")
