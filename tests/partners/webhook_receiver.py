"""A partner's webhook endpoint for tests: a real HTTP server on 127.0.0.1, in a thread.

It records every request and answers as told: a status code, or "hang" (hold the connection open
without answering, so the sender times out). ``verify_signature`` checks a notification the way a
partner would, written from the documented scheme, not from the server's code.
"""

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG = "hang"


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.monotonic()


class Receiver:
    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self.url = ""
        self._plan: list[int | str] = []
        self._then: int | str = 200
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.hanging = 0  # requests held open right now
        self.hang_started = threading.Event()
        self.answer_after: threading.Event | None = None  # hold answers until this is set

    def answer(self, *first: int | str, then: int | str = 200) -> None:
        """Answer the next requests with ``first`` in order (codes or HANG), then with ``then``."""
        with self._lock:
            self._plan, self._then = list(first), then

    def _next_behaviour(self) -> int | str:
        with self._lock:
            return self._plan.pop(0) if self._plan else self._then

    def release(self) -> None:
        self._release.set()

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        with self._lock:
            self.requests.append(
                ReceivedRequest(
                    method=handler.command,
                    path=handler.path,
                    headers=dict(handler.headers.items()),
                    body=body,
                    received_at=time.monotonic(),
                )
            )
        behaviour = self._next_behaviour()
        if behaviour == HANG:
            with self._lock:
                self.hanging += 1
            self.hang_started.set()
            self._release.wait(timeout=60)
            with self._lock:
                self.hanging -= 1
            handler.close_connection = True
            return
        if self.answer_after is not None:
            self.answer_after.wait(timeout=15)
        code = int(behaviour)
        handler.send_response(code)
        if 300 <= code < 400:
            handler.send_header("Location", "http://127.0.0.1:9/elsewhere")
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"ok")


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            receiver.handle(self)

        do_GET = do_POST  # a followed redirect would show up as a GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/tid?token=abc"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def verify_signature(
    *, secret: str, headers: dict[str, str], body: bytes, tolerance_seconds: int = 300
) -> bool:
    """What a partner does with a notification: recompute the HMAC over "<timestamp>.<body>"
    with its secret, compare in constant time, and refuse stale timestamps (replays)."""
    timestamp, signature = headers.get("X-Tid-Timestamp", ""), headers.get("X-Tid-Signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance_seconds:
        return False
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(f"v1={mac.hexdigest()}", signature)
