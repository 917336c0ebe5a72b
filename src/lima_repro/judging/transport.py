"""What keeps the OpenAI-compatible judge (`remote.py`) bounded against slow, overloaded or hostile servers.

`server_identity`: the server as the cache key names it (one server, however its URL is spelled; no key in it).
`Throttle`: how many requests are in flight (AIMD) and each one's queue-aware deadline.
`RetryBudget`: the wall-clock seconds a stage may spend with requests failing and waiting to be retried.
`DeadlineBackend`: the socket layer under httpx, so that a request ends at its deadline however the server trickles
bytes, and every request in flight ends within a fraction of a second of `abort` (Ctrl-C, a spent budget).
"""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpcore
import httpx

LOOPBACK = ("localhost", "localhost.", "127.0.0.1", "::1")
DEFAULT_PORTS = {"http": 80, "https": 443}
# query parameters some gateways take a key in; never part of the server's identity, never shown
KEY_PARAMS = ("api_key", "api-key", "apikey", "key", "token", "access_token", "auth")
SLICE_S = 0.25  # longest single socket wait: how soon a request notices its deadline or `abort`
CONNECT_SLICE_S = 2.0  # a connect cut short starts over: long enough for any round trip


def server_identity(url: str | None) -> tuple[str | None, tuple[str, ...]]:
    """(the server `url` names, as cache keys and messages show it; the credentials written into `url`). Scheme and
    host are lower-cased, `localhost` / `127.0.0.1` / `::1` are one loopback (127.0.0.1), a default port and
    trailing slashes go, and a key pasted as `user:KEY@` or `?api_key=KEY` is dropped (and returned, to redact)."""
    if not url or not url.strip():
        return None, ()
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    host = "127.0.0.1" if host in LOOPBACK else f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:  # "host:abc": left as written, the client reports it
        port = None
    query = parse_qsl(parts.query, keep_blank_values=True)
    # `user:KEY@` or a lone `KEY@`: the user name alone is no secret (and redacting a short one would garble text)
    secrets = tuple(s for s in (parts.password or parts.username,) if s)
    secrets += tuple(v for k, v in query if k.lower() in KEY_PARAMS and v)
    kept = urlencode([(k, v) for k, v in query if k.lower() not in KEY_PARAMS])
    netloc = host if port is None or DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}{'?' + kept if kept else ''}", secrets


class Throttle:
    """Requests in flight, adapted to what the server sustains (AIMD, as TCP): the limit starts at `maximum`, halves
    on an overload (client timeout, 429, connection error, 5xx) of a request sent since the last cut, and grows by
    one after `limit` successes in a row, never above `maximum`. A request's deadline counts from when it is sent:
    `timeout_s` for its own answer plus, for each request already in flight, the server's observed time per answer
    (latency / requests in flight at sending; `timeout_s` until one is seen): a server that answers one request at
    a time is not mistaken for a dead one, so abandoned requests it still computes are not sent again."""

    def __init__(self, maximum: int, timeout_s: float, abort: threading.Event):
        self.maximum, self.limit, self.timeout_s, self.abort = maximum, maximum, timeout_s, abort
        self.in_flight, self.successes, self.cut_at = 0, 0, float("-inf")
        self.per_answer_s: float | None = None
        self.cond = threading.Condition()

    def acquire(self) -> tuple[float, float, int]:
        """Wait for a free slot; (sent at, deadline, requests ahead) on time.monotonic's clock. Returns at once,
        slot-less (ahead -1), when `abort` is set."""
        with self.cond:
            while self.in_flight >= self.limit and not self.abort.is_set():
                self.cond.wait(SLICE_S)
            if self.abort.is_set():
                return 0.0, 0.0, -1
            ahead = self.in_flight
            self.in_flight += 1
            per = self.timeout_s if self.per_answer_s is None else self.per_answer_s
            now = time.monotonic()
            return now, now + self.timeout_s + ahead * per, ahead

    def release(self, sent_at: float, ahead: int, outcome: str) -> None:
        """`outcome`: `ok`, `overload` (halves the limit) or `other` (a 4xx, a malformed answer: no signal)."""
        with self.cond:
            self.in_flight -= 1
            now = time.monotonic()
            if outcome == "ok":
                per = min((now - sent_at) / (ahead + 1), self.timeout_s)
                self.per_answer_s = per if self.per_answer_s is None else 0.7 * self.per_answer_s + 0.3 * per
                self.successes += 1
                if self.successes >= self.limit:
                    self.limit, self.successes = min(self.maximum, self.limit + 1), 0
            elif outcome == "overload" and sent_at >= self.cut_at:  # one cut per wave of failures, as TCP
                self.limit, self.successes, self.cut_at = max(1, self.limit // 2), 0, now
            self.cond.notify_all()


class RetryBudget:
    """Wall-clock seconds during which at least one request has failed and is waiting for its retry (a server
    answering 429 for ever, or trickling bytes, spends it; a brief outage spends its own length)."""

    def __init__(self, seconds: float):
        self.seconds, self.failing, self.since, self.spent_s = seconds, 0, 0.0, 0.0
        self.lock = threading.Lock()

    def spent(self) -> float:
        with self.lock:
            return self.spent_s + (time.monotonic() - self.since if self.failing else 0.0)

    def fail(self) -> bool:
        """A request entered its retries; False when the budget is spent (then it is not retried)."""
        with self.lock:
            if not self.failing:
                self.since = time.monotonic()
            self.failing += 1
        return self.spent() <= self.seconds

    def done(self) -> None:
        """A request that had failed ended (answered, or gave up)."""
        with self.lock:
            self.failing -= 1
            if not self.failing:
                self.spent_s += time.monotonic() - self.since


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sockets, each wait cut into slices of SLICE_S: a connect, write or read ends when the calling
    thread's deadline (`local.deadline`, monotonic) passes, even while bytes keep trickling in, and soon after
    `abort` is set. httpx's own timeouts stay per read; this is the total one."""

    def __init__(self):
        self.inner, self.local, self.abort = httpcore.SyncBackend(), threading.local(), threading.Event()

    def wait_s(self, timeout: float | None, slice_s: float = float("inf")) -> float | None:
        """The next socket wait: at most `slice_s`, `timeout`, and the time left to the deadline (None: no bound)."""
        if self.abort.is_set():
            raise httpcore.ReadError("interrupted")
        left = getattr(self.local, "deadline", float("inf")) - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("the request's total deadline passed")
        wait = min(slice_s, left, float("inf") if timeout is None else timeout)
        return None if wait == float("inf") else wait

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                wait = self.wait_s(timeout, CONNECT_SLICE_S)
                return DeadlineStream(self.inner.connect_tcp(host, port, wait, local_address, socket_options), self)
            except httpcore.ConnectTimeout:
                if end is not None and time.monotonic() >= end:
                    raise

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        return DeadlineStream(self.inner.connect_unix_socket(path, self.wait_s(timeout), socket_options), self)

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, backend: DeadlineBackend):
        self.stream, self.backend = stream, backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        end = None if timeout is None else time.monotonic() + timeout
        while True:  # a timed-out recv consumed nothing: the next slice goes on where it stopped
            try:
                return self.stream.read(max_bytes, self.backend.wait_s(timeout, SLICE_S))
            except httpcore.ReadTimeout:
                if end is not None and time.monotonic() >= end:
                    raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # not sliced: a send cut short cannot be resumed (a request body is small; the deadline still bounds it)
        self.stream.write(buffer, self.backend.wait_s(timeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        return DeadlineStream(self.stream.start_tls(ssl_context, server_hostname, timeout), self.backend)

    def get_extra_info(self, info: str):
        return self.stream.get_extra_info(info)


def deadline_http_client(backend: DeadlineBackend, timeout_s: float) -> httpx.Client:
    """An httpx client whose sockets are `backend`'s. httpx takes no network backend, so its transport's pool is
    rebuilt with one (the pool httpx would build, as the openai client configures it)."""
    transport = httpx.HTTPTransport(limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100))
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=1000,
        max_keepalive_connections=100,
        keepalive_expiry=5.0,
        network_backend=backend,
    )
    return httpx.Client(transport=transport, timeout=timeout_s, follow_redirects=True)
