"""CycloneDX software bills of materials (JSON) for a plan: ``--sbom FILE``."""

from __future__ import annotations

import datetime
import email.parser
import json
import os
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from safepip import __version__
from safepip.models import FileLink, IndexSource, Pin, Plan
from safepip.net import strip_credentials

if TYPE_CHECKING:
    from safepip.attest import Identity

__all__ = ["SPEC_VERSION", "build_sbom", "purl", "write_sbom", "write_sbom_if_asked"]

SPEC_VERSION = "1.6"


def _clean(url: str) -> str:
    """A URL without any credentials: an SBOM is shared."""
    return strip_credentials(url)[0]


def purl(name: str, version: str, index_url: str | None = None) -> str:
    """The package URL of a PyPI project version, naming a non-default index when there is one."""
    base = f"pkg:pypi/{canonicalize_name(name)}@{urllib.parse.quote(version, safe='.+!')}"
    if index_url:
        return base + "?repository_url=" + urllib.parse.quote(_clean(index_url), safe="")
    return base


def _licenses(metadata: bytes) -> list[dict[str, Any]]:
    if not metadata:
        return []
    msg = email.parser.BytesParser().parsebytes(metadata, headersonly=True)
    expression = msg.get("License-Expression")
    if expression and expression.strip():
        return [{"expression": str(expression).strip()}]
    names = [
        str(c).split("::")[-1].strip()
        for c in msg.get_all("Classifier") or ()
        if str(c).startswith("License ::") and str(c).count("::") >= 2
    ]
    text = str(msg.get("License") or "").strip()
    if not names and text and "\n" not in text and len(text) <= 100 and text.upper() != "UNKNOWN":
        names = [text]
    return [{"license": {"name": n}} for n in dict.fromkeys(names)]


def _index_of(link: FileLink, sources: Sequence[IndexSource]) -> IndexSource | None:
    return next((s for s in sources if s.url == link.index_url), None)


def _component(
    pin: Pin, sha256: str | None, sources: Sequence[IndexSource], identity: Identity | None
) -> dict[str, Any]:
    version = str(pin.version)
    properties: list[dict[str, str]] = []
    index_url = None
    component: dict[str, Any] = {"type": "library", "name": pin.name, "version": version}
    if isinstance(pin.source, FileLink):
        link = pin.source
        source = _index_of(link, sources)
        index_url = None if source is not None and source.public else link.index_url
        properties.append({"name": "safepip:index", "value": _clean(link.index_url)})
        if source is not None and source.name:
            properties.append({"name": "safepip:index-name", "value": source.name})
        properties.append({"name": "safepip:filename", "value": link.filename})
        digest = sha256 or link.sha256
        if digest:
            component["hashes"] = [{"alg": "SHA-256", "content": digest}]
        component["externalReferences"] = [{"type": "distribution", "url": _clean(link.url)}]
    else:
        properties.append({"name": "safepip:already-installed", "value": "true"})
    if identity is not None:  # the PEP 740 publisher pinned in the lock, as JSON
        properties.append({"name": "safepip:attestation:identity", "value": identity.to_json()})
    ref = purl(pin.name, version, index_url)
    component["bom-ref"] = ref
    component["purl"] = ref
    licenses = _licenses(pin.metadata)
    if licenses:
        component["licenses"] = licenses
    component["properties"] = properties
    return component


def _depends_on(pin: Pin, refs: Mapping[str, str]) -> list[str]:
    out = []
    for text in pin.requires:
        try:
            name = canonicalize_name(Requirement(text).name)
        except InvalidRequirement:
            continue
        if name in refs and refs[name] not in out and name != pin.name:
            out.append(refs[name])
    return out


def build_sbom(
    plan: Plan,
    hashes: Mapping[str, str],
    sources: Sequence[IndexSource],
    *,
    now: datetime.datetime | None = None,
    serial: uuid.UUID | None = None,
    identities: Mapping[str, Identity] | None = None,
) -> dict[str, Any]:
    """A CycloneDX 1.6 BOM of every pin: purl, version, sha256, licences, its index and its
    pinned publisher identity."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    identities = identities or {}
    components = [
        _component(p, hashes.get(p.name), sources, identities.get(p.name)) for p in plan.pins
    ]
    refs: dict[str, str] = {
        p.name: c["bom-ref"] for p, c in zip(plan.pins, components, strict=True)
    }
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": (serial or uuid.uuid4()).urn,
        "version": 1,
        "metadata": {
            "timestamp": now.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "tools": {
                "components": [{"type": "application", "name": "safepip", "version": __version__}]
            },
        },
        "components": components,
        "dependencies": [
            {"ref": refs[p.name], "dependsOn": _depends_on(p, refs)} for p in plan.pins
        ],
    }


def write_sbom(path: str | Path, bom: Mapping[str, Any]) -> None:
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(bom, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)


def write_sbom_if_asked(
    extra: Mapping[str, Sequence[str]],
    plan: Plan,
    hashes: Mapping[str, str],
    sources: Sequence[IndexSource],
    identities: Mapping[str, Identity] | None = None,
) -> None:
    """Write the BOM to the ``--sbom`` file, when one was given (install, lock)."""
    paths = extra.get("--sbom") or ()
    if paths:
        write_sbom(paths[-1], build_sbom(plan, hashes, sources, identities=identities))
