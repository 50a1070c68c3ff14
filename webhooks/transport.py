"""Sending one webhook attempt to a merchant's URL, which we do not trust:

* the host is resolved once, every address checked (``targets.approved_addresses``), and the
  connection goes to that checked address with the original ``Host`` header and, for https, the
  original name for SNI and certificate verification: no second DNS lookup that a rebinding DNS
  server could answer with an internal address;
* redirects are not followed, proxies from the environment are not used;
* each network operation is bounded by ``OUTBOUND_HTTP_TIMEOUT_SECONDS`` and the whole attempt
  (connect, TLS, send, headers, the part of the answer we read) by ``attempt_timeout()``, so a
  receiver trickling its answer a byte at a time cannot hold a worker;
* at most ``MAX_RESPONSE_BYTES`` of the answer are read (the log keeps an excerpt).

This uses httpcore (httpx's engine) directly, because the total deadline lives in its network
backend. Errors come out as the matching ``httpx`` exceptions. Nothing secret is logged: the
signature travels in a header, never in the URL.
"""

from __future__ import annotations

import ipaddress
import ssl
import time
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpcore
import httpx
from django.conf import settings

from webhooks import targets

MAX_RESPONSE_BYTES = 4096

_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


@dataclass(frozen=True)
class Answer:
    status_code: int
    text: str


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation gets at most the time left until ``deadline``."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def _left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("webhook attempt took too long")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._stream.start_tls(
            ssl_context, server_hostname, self._left(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, deadline: float) -> None:
        self._backend = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("webhook attempt took too long")
        stream = self._backend.connect_tcp(
            host,
            port,
            timeout=left if timeout is None else min(timeout, left),
            local_address=local_address,
            socket_options=socket_options,
        )
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not webhook targets")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _pinned(url: str, address: str) -> tuple[str, dict[str, Any]]:
    """``url`` with its host replaced by ``address``, and the request extensions that keep TLS
    speaking to (and verifying) the original host name."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return url, {}  # already a literal address: nothing to pin
    except ValueError:
        pass
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    netloc = f"[{ip}]" if ip.version == 6 else str(ip)
    if parts.port is not None:
        netloc += f":{parts.port}"
    extensions: dict[str, Any] = {}
    if parts.scheme == "https":
        extensions["sni_hostname"] = host
    return urlunsplit(parts._replace(netloc=netloc)), extensions


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc) or type(exc).__name__) from None
        raise


def post(url: str, *, body: bytes, headers: Mapping[str, str]) -> Answer:
    """POST ``body`` to ``url``. Raises ``UnsafeWebhookTarget`` for a refused target and
    ``httpx.HTTPError`` when no answer came; any answer (whatever its status) is returned."""
    addresses = targets.approved_addresses(url)
    pinned_url, extensions = _pinned(url, addresses[0])
    request_headers = [(b"Host", _host_header(url))] + [
        (name.encode(), value.encode()) for name, value in headers.items() if name.lower() != "host"
    ]
    step = settings.OUTBOUND_HTTP_TIMEOUT_SECONDS
    extensions["timeout"] = {"connect": step, "read": step, "write": step, "pool": step}
    deadline = time.monotonic() + attempt_timeout()
    with (
        _as_httpx_errors(),
        httpcore.ConnectionPool(
            ssl_context=ssl_context(),
            network_backend=_DeadlineBackend(deadline),
            max_connections=1,
            retries=0,
        ) as pool,
        pool.stream(
            "POST", pinned_url, headers=request_headers, content=body, extensions=extensions
        ) as response,
    ):
        received = bytearray()
        for chunk in response.iter_stream():
            received += chunk
            if len(received) >= MAX_RESPONSE_BYTES:
                break  # leaving the block closes the connection without reading the rest
        charset = _charset(response.headers)
        text = bytes(received[:MAX_RESPONSE_BYTES]).decode(charset, errors="replace")
        return Answer(status_code=response.status, text=text)


def ssl_context() -> ssl.SSLContext:
    """Certificates verified against the system's (certifi's) authorities, as httpx does."""
    return httpx.create_ssl_context()


def attempt_timeout() -> float:
    """The whole attempt's limit: ``WEBHOOK_ATTEMPT_TIMEOUT_SECONDS`` if set, else three times
    ``OUTBOUND_HTTP_TIMEOUT_SECONDS`` (30 s by default)."""
    found = getattr(settings, "WEBHOOK_ATTEMPT_TIMEOUT_SECONDS", None)
    return float(found if found is not None else 3 * settings.OUTBOUND_HTTP_TIMEOUT_SECONDS)


def _host_header(url: str) -> bytes:
    """The merchant's host name (IDNA-encoded, IPv6 in brackets), with the port if one is
    given: what the receiver would have seen without the pinning."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
        encoded = f"[{ip}]" if ip.version == 6 else str(ip)
    except ValueError:
        encoded = host.encode("idna").decode("ascii")
    if parts.port is not None:
        encoded += f":{parts.port}"
    return encoded.encode("ascii")


def _charset(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name.lower() == b"content-type":
            for param in value.decode("latin-1").split(";")[1:]:
                key, _sep, found = param.strip().partition("=")
                if key.lower() == "charset" and found:
                    try:
                        "".encode(found.strip('"'))
                    except LookupError:
                        break
                    return found.strip('"')
    return "utf-8"
