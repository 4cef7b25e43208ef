"""Progress through a reporter (core code never prints) and pip's JSON installation report."""

from __future__ import annotations

import email.parser
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from safepip import __version__
from safepip.models import DirectReference, FileLink, Finding, Pin, Plan
from safepip.net import redact_url

__all__ = ["NullReporter", "Reporter", "TerminalReporter", "build_report", "metadata_to_json"]


class Reporter(Protocol):
    def info(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...

    def detail(self, message: str) -> None: ...


class NullReporter:
    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def detail(self, message: str) -> None:
        pass


@dataclass
class RecordingReporter:
    messages: list[tuple[str, str]] = field(default_factory=list)

    def info(self, message: str) -> None:
        self.messages.append(("info", message))

    def warning(self, message: str) -> None:
        self.messages.append(("warning", message))

    def detail(self, message: str) -> None:
        self.messages.append(("detail", message))


class TerminalReporter:
    """pip-like output: info at default verbosity, detail with -v, nothing but warnings with -q."""

    def __init__(self, verbosity: int, stream: TextIO | None = None) -> None:
        self.verbosity = verbosity
        self.stream = stream or sys.stdout

    def info(self, message: str) -> None:
        if self.verbosity >= 0:
            print(message, file=self.stream, flush=True)

    def warning(self, message: str) -> None:
        if self.verbosity >= -1:
            print(f"WARNING: {message}", file=sys.stderr, flush=True)

    def detail(self, message: str) -> None:
        if self.verbosity >= 1:
            print(message, file=self.stream, flush=True)


_MULTI = {
    "classifier",
    "dynamic",
    "license_file",
    "obsoletes_dist",
    "platform",
    "project_url",
    "provides_dist",
    "provides_extra",
    "requires_dist",
    "requires_external",
    "supported_platform",
}


def metadata_to_json(raw: bytes) -> dict[str, Any]:
    """Core metadata as JSON, the way PEP 566 (and pip's report) converts it."""
    msg = email.parser.BytesParser().parsebytes(raw)
    out: dict[str, Any] = {}
    for key in dict.fromkeys(msg.keys()):
        json_key = key.lower().replace("-", "_")
        values = [str(v) for v in msg.get_all(key) or ()]
        if json_key == "keywords":
            out[json_key] = values[0].replace(",", " ").split() if values else []
        elif json_key in _MULTI:
            out[json_key] = values
        else:
            out[json_key] = values[0] if values else ""
    payload = msg.get_payload()
    if isinstance(payload, str) and payload.strip():
        out["description"] = payload
    return out


def _download_info(link: FileLink, sha256: str | None) -> dict[str, Any]:
    hashes = dict(link.hashes.pairs)
    if sha256:
        hashes["sha256"] = sha256
    info: dict[str, Any] = {"url": redact_url(link.url), "archive_info": {}}
    if hashes.get("sha256"):
        info["archive_info"]["hash"] = f"sha256={hashes['sha256']}"
    if hashes:
        info["archive_info"]["hashes"] = hashes
    return info


def _direct_info(reference: DirectReference, sha256: str | None) -> dict[str, Any]:
    from safepip.direct import direct_url_json

    file_hash = sha256 if reference.kind in ("wheel", "archive") else None
    return direct_url_json(reference, sha256=file_hash, commit_id=reference.commit_id)


def build_report(
    plan: Plan,
    environment: Mapping[str, str],
    decisions: Mapping[str, Mapping[str, Any]],
    file_hashes: Mapping[str, str],
    extra: Mapping[str, Any] | None = None,
    findings: Sequence[Finding] = (),
) -> dict[str, Any]:
    """pip's installation report (version 1) for the pins to install, plus a ``safepip`` key."""
    from pip import __version__ as pip_version

    install: list[dict[str, Any]] = []
    for pin in plan.to_install():
        assert isinstance(pin.source, FileLink)
        link = pin.source
        install.append(
            {
                "metadata": metadata_to_json(pin.metadata),
                "is_direct": pin.direct is not None,
                "is_yanked": link.yanked,
                "requested": pin.requested,
                **(
                    {"requested_extras": sorted(pin.extras)} if pin.requested and pin.extras else {}
                ),
                "download_info": _download_info(link, file_hashes.get(pin.name) or link.sha256)
                if pin.direct is None
                else _direct_info(pin.direct, file_hashes.get(pin.name)),
            }
        )
    return {
        "version": "1",
        "pip_version": pip_version,
        "install": install,
        "environment": dict(environment),
        "safepip": {
            "version": __version__,
            "decisions": {k: dict(v) for k, v in decisions.items()},
            "findings": [f.to_json() for f in findings],
            **(dict(extra) if extra else {}),
        },
    }


def write_report(report: Mapping[str, Any], path: str, stdout: TextIO | None = None) -> None:
    text = json.dumps(report, indent=2, sort_keys=False)
    if path == "-":
        print(text, file=stdout or sys.stdout)
        return
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def describe_pins(pins: Sequence[Pin]) -> str:
    return " ".join(f"{p.name}-{p.version}" for p in pins)
