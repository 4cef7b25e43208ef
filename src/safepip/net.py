"""HTTP sessions as pip configures them: CA bundle, client certificate, proxies, retries,
credentials bound to their origin, and redaction of every URL shown to a person."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
import requests.adapters
import urllib3.exceptions
import urllib3.util.retry
import urllib3.util.ssl_

from safepip import __version__

__all__ = [
    "BodyBroken",
    "BodyError",
    "BodyStalled",
    "BodyTimedOut",
    "BodyTooLarge",
    "NetSettings",
    "Origin",
    "body_retries",
    "describe_network_error",
    "is_secure_origin",
    "iter_body",
    "make_session",
    "origin_of",
    "read_body",
    "redact_url",
    "release_unread",
    "retry_pause",
    "with_body_retries",
]

_T = TypeVar("_T")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def redact_url(url: str) -> str:
    """Replace any password (or lone token) in ``url`` with ``****``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, sep, _password = userinfo.partition(":")
    shown = f"{user}:****" if sep else "****"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{shown}@{hostport}"))


def strip_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """Return ``url`` without userinfo, and the ``(user, password)`` it carried."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urllib.parse.urlunsplit(parts._replace(netloc=hostport))
    return clean, (urllib.parse.unquote(user), urllib.parse.unquote(password))


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int | None


def origin_of(url: str) -> Origin:
    parts = urllib.parse.urlsplit(url)
    port = parts.port
    if port is None:
        port = {"https": 443, "http": 80}.get(parts.scheme)
    return Origin(parts.scheme, (parts.hostname or "").lower(), port)


def is_secure_origin(url: str) -> bool:
    """HTTPS, ``file:``, and plain HTTP on loopback are secure, as pip treats them."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("https", "file"):
        return True
    host = (parts.hostname or "").lower()
    return parts.scheme == "http" and (host in _LOOPBACK_HOSTS or host.startswith("127."))


@dataclass(frozen=True, slots=True)
class NetSettings:
    """Network options, taken from pip's options."""

    cert: str | None = None
    client_cert: str | None = None
    proxy: str | None = None
    trust_env: bool = True
    retries: int = 5
    timeout: float = 15.0
    keyring_provider: str = "auto"
    credentials: tuple[tuple[str, str, str], ...] = field(default=())  # (url prefix, user, pw)


class _OriginAuth(requests.auth.AuthBase):
    """Basic auth sent only to the origin (scheme, host, port) and path prefix it was given for."""

    def __init__(
        self, credentials: Iterable[tuple[str, str, str]], keyring: _Keyring, use_netrc: bool
    ) -> None:
        self._creds = [
            (origin_of(u), urllib.parse.urlsplit(u).path, user, pw, u)
            for u, user, pw in credentials
        ]
        self._keyring = keyring
        self._use_netrc = use_netrc

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = request.url or ""
        origin = origin_of(url)
        path = urllib.parse.urlsplit(url).path
        best: tuple[int, str, str, str] | None = None
        for cred_origin, prefix, user, pw, index_url in self._creds:
            if cred_origin == origin and path.startswith(prefix.rstrip("/")):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), user, pw, index_url)
        if best is not None:
            _, user, pw, index_url = best
            if user and not pw:
                pw = self._keyring.password(index_url, user) or ""
            request.prepare_auth((user, pw))
        elif self._use_netrc:
            netrc_auth = requests.utils.get_netrc_auth(url)
            if netrc_auth:
                request.prepare_auth(netrc_auth)
        return request


class _Keyring:
    """Looks passwords up with the ``keyring`` command (no Python dependency on keyring)."""

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], str | None] = {}

    def password(self, index_url: str, user: str) -> str | None:
        """As pip asks keyring: first for the index URL, then for its ``host[:port]``."""
        if self._provider in ("disabled", "import"):
            return None
        exe = shutil.which("keyring")
        if exe is None:
            return None
        netloc = urllib.parse.urlsplit(index_url).netloc.rpartition("@")[2]
        for service in (index_url, netloc):
            found = self._lookup(exe, service, user)
            if found:
                return found
        return None

    def _lookup(self, exe: str, service: str, user: str) -> str | None:
        key = (service, user)
        with self._lock:
            if key not in self._cache:
                try:
                    out = subprocess.run(
                        [exe, "get", service, user],
                        capture_output=True,
                        text=True,
                        timeout=30,
                        check=False,
                        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
                    )
                    self._cache[key] = out.stdout.rstrip("\n") if out.returncode == 0 else None
                except (OSError, subprocess.SubprocessError):
                    self._cache[key] = None
            return self._cache[key]


class _Session(requests.Session):
    """A session whose own ``verify`` (pip's --cert) wins over REQUESTS_CA_BUNDLE and
    CURL_CA_BUNDLE, which requests would otherwise let override it."""

    def merge_environment_settings(
        self,
        url: str | bytes | None,
        proxies: Any,
        stream: Any,
        verify: Any,
        cert: Any,
    ) -> Any:
        if verify is None and isinstance(self.verify, str):
            verify = self.verify
        return super().merge_environment_settings(url, proxies, stream, verify, cert)


class _SharedTrustAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with each CA bundle read once per session instead of once per new
    connection (urllib3 builds a TLS context and loads the bundle for every connection it
    opens: tens of milliseconds of CPU each, many times over while pages and metadata are
    fetched in parallel). The context is made as urllib3 makes its own; a client certificate
    leaves everything to requests."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._contexts: dict[tuple[str, bool], ssl.SSLContext] = {}
        self._contexts_lock = threading.Lock()

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[Any, Any]:  # requests' own (private) TypedDicts
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        location = _trust_location(verify, cert)
        if host_params.get("scheme") == "https" and location is not None:
            pool_kwargs.pop("ca_certs", None)
            pool_kwargs.pop("ca_cert_dir", None)
            pool_kwargs["ssl_context"] = self._context_for(*location)
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        shared = getattr(conn, "conn_kw", {}).get("ssl_context")
        with self._contexts_lock:
            ours = any(shared is context for context in self._contexts.values())
        if ours:
            conn.ca_certs = None  # already in the shared context; loading again adds nothing
            conn.ca_cert_dir = None

    def _context_for(self, location: str, is_dir: bool) -> ssl.SSLContext:
        with self._contexts_lock:
            context = self._contexts.get((location, is_dir))
            if context is None:
                context = urllib3.util.ssl_.create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
                try:
                    if is_dir:
                        context.load_verify_locations(capath=location)
                    else:
                        context.load_verify_locations(cafile=location)
                except OSError as exc:
                    raise requests.exceptions.SSLError(exc) from exc
                self._contexts[(location, is_dir)] = context
            return context


def _trust_location(verify: Any, cert: Any) -> tuple[str, bool] | None:
    """The CA bundle (file or directory) ``verify`` names, as requests would read it, or None
    when there is nothing to share (no verification, a client certificate, no bundle)."""
    if verify is False or cert:
        return None
    location = requests.adapters.DEFAULT_CA_BUNDLE_PATH if verify is True else verify
    if not isinstance(location, str) or not location or not os.path.exists(location):
        return None  # requests raises its own error for a missing bundle
    return location, os.path.isdir(location)


def make_session(settings: NetSettings, pool_size: int = 32) -> requests.Session:
    session = _Session()
    session.headers["User-Agent"] = f"safepip/{__version__}"
    session.trust_env = settings.trust_env
    if settings.cert:
        session.verify = settings.cert
    elif not settings.trust_env:
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            session.verify = bundle
    if settings.client_cert:
        session.cert = settings.client_cert
    if settings.proxy:
        session.proxies = {"http": settings.proxy, "https": settings.proxy}
    retry = _BoundedRetry(
        total=settings.retries,
        connect=settings.retries,
        read=settings.retries,
        status=settings.retries,
        backoff_factor=0.25,
        status_forcelist=(429, 500, 502, 503, 504, 520, 527),
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    retry.max_retry_after = settings.timeout
    adapter = _SharedTrustAdapter(
        pool_connections=pool_size, pool_maxsize=pool_size, max_retries=retry
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.auth = _OriginAuth(
        settings.credentials, _Keyring(settings.keyring_provider), settings.trust_env
    )
    session.max_redirects = 10
    return session


class _BoundedRetry(urllib3.util.retry.Retry):
    """urllib3's retries, with a server's Retry-After honoured only up to ``max_retry_after``
    seconds (the --timeout): a hostile or confused server cannot park a run for hours."""

    max_retry_after: float = 15.0

    def new(self, **kw: object) -> _BoundedRetry:
        fresh = super().new(**kw)
        assert isinstance(fresh, _BoundedRetry)
        fresh.max_retry_after = self.max_retry_after
        return fresh

    def parse_retry_after(self, retry_after: str) -> float:
        try:
            seconds = super().parse_retry_after(retry_after)
        except urllib3.exceptions.InvalidHeader:
            seconds = 0.0  # unreadable: fall back to the exponential backoff
        return max(0.0, min(seconds, self.max_retry_after))


# A body must bring at least this many bytes in every --timeout window (curl's low-speed limit):
# a server trickling a byte a second defeats a per-read timeout, not this.
MIN_BYTES_PER_WINDOW = 16 * 1024


class BodyError(requests.exceptions.RequestException):
    """The response started but its body did not arrive whole. urllib3 retries failures before a
    response starts; these are retried by the body's reader, per --retries."""


class BodyBroken(BodyError, requests.exceptions.ChunkedEncodingError):
    """The connection reset or closed before the announced body arrived."""


class BodyTimedOut(BodyError, requests.exceptions.ReadTimeout):
    """No byte of the body arrived for --timeout seconds."""


class BodyStalled(BodyError, requests.exceptions.Timeout):
    """A response body arrived slower than the low-speed limit."""


class BodyTooLarge(Exception):
    """A response body went past the size its reader allows."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


def iter_body(
    resp: requests.Response, timeout: float, chunk_size: int = 256 * 1024
) -> Iterator[bytes]:
    """The (decoded) body of a streamed response as it arrives, each chunk as soon as the network
    gives it; raises requests' own exceptions, and :class:`BodyStalled` under the low-speed limit."""
    raw = resp.raw
    window_start = time.monotonic()
    window_bytes = 0
    while True:
        try:
            chunk = raw.read1(chunk_size, decode_content=True)
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise BodyTimedOut(str(exc)) from None
        except urllib3.exceptions.SSLError as exc:
            raise requests.exceptions.SSLError(str(exc)) from None
        except urllib3.exceptions.DecodeError as exc:
            raise requests.exceptions.ContentDecodingError(str(exc)) from None
        except (urllib3.exceptions.ProtocolError, OSError) as exc:
            raise BodyBroken(str(exc)) from None
        if not chunk:
            return
        yield chunk
        window_bytes += len(chunk)
        now = time.monotonic()
        if now - window_start >= timeout:
            if window_bytes < MIN_BYTES_PER_WINDOW:
                raise BodyStalled(
                    f"fewer than {MIN_BYTES_PER_WINDOW} bytes in {timeout:g} s: stalled"
                )
            window_start, window_bytes = now, 0


def read_body(resp: requests.Response, limit: int, timeout: float) -> bytes:
    """The whole body of a streamed response, or :class:`BodyTooLarge` past ``limit`` bytes."""
    chunks: list[bytes] = []
    total = 0
    for chunk in iter_body(resp, timeout):
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def release_unread(resp: requests.Response, timeout: float, limit: int = 64 * 1024) -> None:
    """Read a short answer the caller has no use for (a 404, a 304, an error page) to its end,
    so that its connection goes back to the pool. A streamed answer closed unread takes its
    connection with it: the next request then pays a name lookup and a TLS handshake, and a
    burst of lookups can wait seconds on a resolver that drops some. A body that is longer, or
    of no stated length, is left (with its connection)."""
    length = resp.headers.get("Content-Length")
    bodiless = resp.status_code in (204, 304)
    if not bodiless and (length is None or not length.isdigit() or int(length) > limit):
        return
    read = 0
    try:
        for chunk in iter_body(resp, timeout):
            read += len(chunk)
            if read > limit:
                return
    except (requests.RequestException, BodyError, OSError):
        return


def body_retries(session: requests.Session, url: str) -> int:
    """How many times a failed body may be fetched again: the session's --retries."""
    try:
        retry = getattr(session.get_adapter(url), "max_retries", None)
    except requests.exceptions.InvalidSchema:
        return 0
    total = getattr(retry, "total", 0)
    return total if isinstance(total, int) and not isinstance(total, bool) else 0


def retry_pause(attempt: int) -> None:
    """Back off before attempt ``attempt + 1`` (0.25 s, 0.5 s, 1 s, ... at most 4 s)."""
    time.sleep(min(0.25 * 2**attempt, 4.0))


def with_body_retries(session: requests.Session, url: str, attempt: Callable[[], _T]) -> _T:
    """``attempt()``, again after each :class:`BodyError` up to the session's --retries, with
    backoff; the last failure propagates."""
    retries = body_retries(session, url)
    for number in range(retries):
        try:
            return attempt()
        except BodyError:  # noqa: PERF203 - a retry loop is the point
            retry_pause(number)
    return attempt()


def describe_network_error(exc: BaseException) -> str:
    """What went wrong on the network, in words that carry no URL (URLs may hold credentials)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS verification failed (is `cert` / PIP_CERT set for this network?)"
    if isinstance(exc, BodyStalled):
        return f"stalled ({exc})"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return "too many redirects (a redirect loop?)"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection broke before the whole response arrived"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection failed"
    text = str(exc)
    kind = type(exc).__name__
    return kind if "@" in text or "://" in text else f"{kind}: {text[:200]}"
