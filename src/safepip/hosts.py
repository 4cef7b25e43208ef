"""Plain-HTTP indexes: one rule for plain-http URLs, ``--trusted-host``, ``PIP_TRUSTED_HOST`` and a
configured ``trusted-host``: such an index is refused unless the user's own policy allows its host."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Sequence

from safepip.errors import ConfigError, PolicyRefusal
from safepip.models import IndexSource
from safepip.net import is_secure_origin, redact_url
from safepip.policyfile import Policy

__all__ = ["ALLOW_KEY", "allowed_insecure_hosts", "check_insecure_sources"]

# A top-level key of the user's (trusted) policy: hosts whose plain-HTTP indexes may be used.
ALLOW_KEY = "allow-insecure-hosts"


def allowed_insecure_hosts(policy: Policy) -> frozenset[str]:
    """The hosts (``host`` or ``host:port``) the user's own policy allows over plain HTTP.

    A project's policy files may only tighten, so they may not set this key."""
    if ALLOW_KEY in policy.project:
        raise ConfigError(
            f"a project policy may not set {ALLOW_KEY}: only your own policy can loosen HTTPS",
            hint=f"move {ALLOW_KEY} to your user policy or one given by --policy/SAFEPIP_POLICY",
        )
    value = policy.get(ALLOW_KEY, [])
    if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
        raise ConfigError(f'policy key {ALLOW_KEY} must be a list of host names, e.g. ["build-1"]')
    return frozenset(h.strip().lower() for h in value if h.strip())


def _host_names(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    return host, f"{host}:{parts.port}" if parts.port else host


def check_insecure_sources(
    sources: Sequence[IndexSource], trusted_hosts: Iterable[str], policy: Policy
) -> frozenset[str]:
    """The plain-HTTP hosts that may be used; refuse (exit 3) any other plain-HTTP source.

    Such a source is never dropped: dropping it would hand its project names to the other
    indexes. ``--trusted-host`` alone never allows one (and never turns off HTTPS verification)."""
    allowed = allowed_insecure_hosts(policy)
    trusted = {h.strip().lower() for h in trusted_hosts}
    used: set[str] = set()
    for source in sources:
        if "://" not in source.url or is_secure_origin(source.url):
            continue
        host, host_port = _host_names(source.url)
        if host in allowed or host_port in allowed:
            used.add(host_port)
            continue
        shown = redact_url(source.url)
        why = (
            f"{host} is marked trusted-host, which would turn off transport security"
            if host in trusted or host_port in trusted
            else f"{shown} is plain HTTP"
        )
        raise PolicyRefusal(
            f"refusing to use the index {shown}: {why}",
            hint="serve the index over HTTPS and point `cert` (PIP_CERT) at its CA bundle; "
            f'or list the host in your own policy: {ALLOW_KEY} = ["{host_port}"]',
            reference="insecure-index",
        )
    return frozenset(used)
