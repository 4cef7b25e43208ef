"""HTTP sessions as pip configures them: CA bundle, client certificate, proxies, retries,
credentials bound to their origin, and redaction of every URL shown to a person."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field

import requests
import requests.adapters
import urllib3.util.retry

from safepip import __version__

__all__ = ["NetSettings", "Origin", "is_secure_origin", "make_session", "origin_of", "redact_url"]

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
            (origin_of(u), urllib.parse.urlsplit(u).path, user, pw) for u, user, pw in credentials
        ]
        self._keyring = keyring
        self._use_netrc = use_netrc

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = request.url or ""
        origin = origin_of(url)
        path = urllib.parse.urlsplit(url).path
        best: tuple[int, str, str] | None = None
        for cred_origin, prefix, user, pw in self._creds:
            if cred_origin == origin and path.startswith(prefix.rstrip("/")):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), user, pw)
        if best is not None:
            _, user, pw = best
            if user and not pw:
                pw = self._keyring.password(url, user) or ""
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

    def password(self, url: str, user: str) -> str | None:
        if self._provider in ("disabled", "import"):
            return None
        exe = shutil.which("keyring")
        if exe is None:
            return None
        netloc = urllib.parse.urlsplit(url).hostname or ""
        key = (netloc, user)
        with self._lock:
            if key not in self._cache:
                try:
                    out = subprocess.run(
                        [exe, "get", netloc, user],
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


def make_session(settings: NetSettings, pool_size: int = 16) -> requests.Session:
    session = requests.Session()
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
    retry = urllib3.util.retry.Retry(
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
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=pool_size, pool_maxsize=pool_size, max_retries=retry
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.auth = _OriginAuth(
        settings.credentials, _Keyring(settings.keyring_provider), settings.trust_env
    )
    session.max_redirects = 10
    return session
