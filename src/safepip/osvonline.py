"""Opt-in online advisory lookups through OSV's API: they send every dependency's name and
version to a third party, so the policy must ask for them (``[advisories] online = true``)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import requests
from packaging.utils import NormalizedName
from packaging.version import Version

from safepip.advisories import AdvisoryDB, DatabaseInfo, advisories_from_doc
from safepip.errors import FetchError
from safepip.net import NetSettings, make_session
from safepip.vulnerabilities import VulnerabilityPolicy

__all__ = ["DEFAULT_API", "net_from_environment", "online_database", "query_online"]

DEFAULT_API = "https://api.osv.dev"
_BATCH = 500


def _post(session: requests.Session, url: str, body: Any, timeout: float) -> Any:
    try:
        resp = session.post(url, json=body, timeout=timeout)
    except requests.RequestException as exc:
        raise FetchError(
            f"cannot reach the OSV API at {url}: {type(exc).__name__}",
            hint="check the network, or turn [advisories] online off to use the offline database",
        ) from None
    return _json(resp, url)


def _get(session: requests.Session, url: str, timeout: float) -> Any:
    try:
        resp = session.get(url, timeout=timeout)
    except requests.RequestException as exc:
        raise FetchError(f"cannot reach the OSV API at {url}: {type(exc).__name__}") from None
    return _json(resp, url)


def _json(resp: requests.Response, url: str) -> Any:
    if resp.status_code != 200:
        raise FetchError(f"the OSV API at {url} answered HTTP {resp.status_code}")
    try:
        return resp.json()
    except ValueError:
        raise FetchError(f"the OSV API at {url} did not answer JSON") from None


def query_online(
    session: requests.Session,
    api: str,
    pins: Sequence[tuple[NormalizedName, Version]],
    timeout: float = 30.0,
) -> AdvisoryDB:
    """The advisories OSV knows for these exact versions, as a database of their own."""
    api = api.rstrip("/")
    ids: set[str] = set()
    for start in range(0, len(pins), _BATCH):
        chunk = pins[start : start + _BATCH]
        body = {
            "queries": [
                {"package": {"ecosystem": "PyPI", "name": name}, "version": str(version)}
                for name, version in chunk
            ]
        }
        answer = _post(session, f"{api}/v1/querybatch", body, timeout)
        for result in answer.get("results", []) if isinstance(answer, dict) else []:
            for vuln in (result or {}).get("vulns", []) or []:
                if isinstance(vuln, dict) and isinstance(vuln.get("id"), str):
                    ids.add(vuln["id"])
    by_name: dict[str, list[Any]] = {}
    for ident in sorted(ids):
        doc = _get(session, f"{api}/v1/vulns/{ident}", timeout)
        if isinstance(doc, dict):
            for name, advisory in advisories_from_doc(doc):
                by_name.setdefault(name, []).append(advisory)
    now = datetime.datetime.now(datetime.timezone.utc)
    info = DatabaseInfo(
        source=api,
        as_of=now.date().isoformat(),
        fetched=now.isoformat(timespec="seconds"),
        count=len(ids),
    )
    return AdvisoryDB({k: tuple(v) for k, v in by_name.items()}, info)


def online_database(
    net: NetSettings,
    policy: VulnerabilityPolicy,
    pins: Sequence[tuple[NormalizedName, Version]],
) -> AdvisoryDB | None:
    """OSV's API, only when the trusted policy opts in (``[advisories] online = true``)."""
    if not policy.online:
        return None
    with make_session(net) as session:
        return query_online(session, policy.online_url or DEFAULT_API, pins, timeout=net.timeout)


def net_from_environment(environ: Mapping[str, str]) -> NetSettings:
    """Network settings for commands that take no pip options: pip's own variables."""
    try:
        timeout = float(environ.get("PIP_TIMEOUT") or environ.get("PIP_DEFAULT_TIMEOUT") or 15)
    except ValueError:
        timeout = 15.0
    return NetSettings(
        cert=environ.get("PIP_CERT") or None,
        client_cert=environ.get("PIP_CLIENT_CERT") or None,
        proxy=environ.get("PIP_PROXY") or None,
        timeout=timeout,
    )
