"""The cooldown: pip's --uploaded-prior-to, and the policy's min-release-age."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from safepip.cli import main
from safepip.cooldown import (
    CooldownLinks,
    CooldownPolicy,
    cooldown_findings,
    cooldown_policy,
    parse_age,
)
from safepip.errors import ConfigError
from safepip.models import FileLink, IndexSource, Pin
from tests.kit import Index, IndexServer

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 11, 20, tzinfo=UTC)
DAY = datetime.timedelta(days=1)
PUBLIC = IndexSource(url="https://public.example/simple", public=True)
CORP = IndexSource(url="https://corp.example/simple", name="corp", internal=True)
OTHER = IndexSource(url="https://other.example/simple")


@pytest.mark.parametrize(
    ("value", "days"), [(7, 7), ("P3D", 3), (0, 0), (None, None), ("7", "error"), (-1, "error")]
)
def test_parse_age(value: Any, days: Any) -> None:
    if days == "error":
        with pytest.raises(ConfigError):
            parse_age(value, "[cooldown]")
    else:
        age = parse_age(value, "[cooldown]")
        assert (age.days if age is not None else None) == days


@pytest.mark.parametrize(
    ("trusted", "project", "days", "unknown", "exempt"),
    [
        ({}, {}, None, None, set()),
        ({"min-release-age": 7}, {}, 7, None, set()),
        ({"min-release-age": 7}, {"min-release-age": 14}, 14, None, set()),  # tighten
        ({"min-release-age": 14}, {"min-release-age": 2}, 14, None, set()),  # cannot loosen
        (
            {"unknown-upload-time": "trust"},
            {"unknown-upload-time": "refuse"},
            None,
            "refuse",
            set(),
        ),
        ({}, {"unknown-upload-time": "trust"}, None, None, set()),
        ({"exempt": ["Cert_Ifi"]}, {"exempt": ["evil"]}, None, None, {"cert-ifi"}),
    ],
)
def test_policy(
    trusted: Mapping[str, Any],
    project: Mapping[str, Any],
    days: int | None,
    unknown: str | None,
    exempt: set[str],
) -> None:
    policy = cooldown_policy(trusted, project)
    assert (policy.min_age.days if policy.min_age else None) == days
    assert policy.unknown_upload_time == unknown
    assert policy.exempt == exempt


def _link(source: IndexSource, version: str, uploaded: datetime.datetime | None) -> FileLink:
    return FileLink(
        filename=f"lib-{version}-py3-none-any.whl",
        url=f"{source.url}/lib-{version}-py3-none-any.whl",
        index_url=source.url,
        upload_time=uploaded,
    )


def _pin(link: FileLink) -> Pin:
    version = link.filename.split("-")[1]
    return Pin(name=canonicalize_name("lib"), version=Version(version), source=link)


def _no_fixes(name: NormalizedName) -> Mapping[Version, str]:
    return {}


def _fixes(name: NormalizedName) -> Mapping[Version, str]:
    return {Version("1.1"): "PYSEC-TEST-1"}


WEEK = CooldownPolicy(min_age=7 * DAY)


@pytest.mark.parametrize(
    ("source", "age", "policy", "fixes", "expected"),
    [
        (PUBLIC, 30, WEEK, _no_fixes, None),
        (PUBLIC, 2, WEEK, _no_fixes, ("refuse", "cooldown")),
        (PUBLIC, 2, CooldownPolicy(), _no_fixes, None),  # no cooldown configured
        (PUBLIC, 2, CooldownPolicy(min_age=7 * DAY, exempt=frozenset({"lib"})), _no_fixes, None),
        (PUBLIC, None, WEEK, _no_fixes, ("refuse", "cooldown-unknown-upload-time")),
        (OTHER, None, WEEK, _no_fixes, ("refuse", "cooldown-unknown-upload-time")),
        (CORP, None, WEEK, _no_fixes, None),  # internal: trusted
        (
            CORP,
            None,
            CooldownPolicy(min_age=7 * DAY, unknown_upload_time="refuse"),
            _no_fixes,
            ("refuse", "cooldown-unknown-upload-time"),
        ),
        (
            PUBLIC,
            None,
            CooldownPolicy(min_age=7 * DAY, unknown_upload_time="trust"),
            _no_fixes,
            None,
        ),
        # A young release that fixes a blocked vulnerability, from the index that owns the name.
        (PUBLIC, 2, WEEK, _fixes, ("warn", "cooldown-waived-for-fix")),
        # ...but not from another index.
        (OTHER, 2, WEEK, _fixes, ("refuse", "cooldown")),
        (CORP, 2, WEEK, _fixes, ("refuse", "cooldown")),
    ],
)
def test_findings(
    source: IndexSource,
    age: int | None,
    policy: CooldownPolicy,
    fixes: Any,
    expected: tuple[str, str] | None,
) -> None:
    link = _link(source, "1.1", NOW - age * DAY if age is not None else None)
    found = cooldown_findings([_pin(link)], policy, (PUBLIC, CORP, OTHER), fixes, NOW)
    assert [(f.action, f.rule) for f in found] == ([expected] if expected else [])
    if expected and expected[1] == "cooldown-waived-for-fix":
        assert "fixes PYSEC-TEST-1" in found[0].message


class _Links:
    def __init__(self, links: Sequence[FileLink]) -> None:
        self.links = links

    def links_for(self, name: NormalizedName) -> Sequence[FileLink]:
        return self.links

    def prefetch(self, names: Iterable[NormalizedName]) -> None:
        pass


@pytest.mark.parametrize(
    ("pinned", "fixes", "source", "versions"),
    [
        (frozenset(), _no_fixes, PUBLIC, ["1.0"]),
        (frozenset({"lib"}), _no_fixes, PUBLIC, ["1.0", "1.1"]),  # the gate refuses it instead
        (frozenset(), _fixes, PUBLIC, ["1.0", "1.1"]),  # the fix is let through
        (frozenset(), _fixes, OTHER, ["1.0"]),
    ],
)
def test_resolver_view(
    pinned: frozenset[NormalizedName], fixes: Any, source: IndexSource, versions: list[str]
) -> None:
    inner = _Links([_link(source, "1.0", NOW - 90 * DAY), _link(source, "1.1", NOW - DAY)])
    view = CooldownLinks(inner, WEEK, (PUBLIC, OTHER), pinned, fixes, NOW)
    assert [
        lk.filename.split("-")[1] for lk in view.links_for(canonicalize_name("lib"))
    ] == versions


def _dry_run(server: IndexServer, *args: str) -> int:
    return main(
        ["install", "--dry-run", "--python", sys.executable, "-i", server.simple_url, *args]
    )


def test_min_release_age_end_to_end(
    index: Index, server: IndexServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.datetime.now(UTC)
    index.wheel("lib", "1.0", upload_time=now - 60 * DAY)
    index.wheel("lib", "1.1", upload_time=now - 2 * DAY)
    index.wheel("undated", "1.0").upload_time = None
    policy = tmp_path / "policy.toml"
    policy.write_text("[cooldown]\nmin-release-age = 7\n")
    assert _dry_run(server, "--policy", str(policy), "lib") == 0
    assert "Would install lib-1.0" in capsys.readouterr().out
    assert _dry_run(server, "--policy", str(policy), "lib==1.1") == 3
    err = capsys.readouterr().err
    assert (
        "lib==1.1 was uploaded 2 day(s) ago, less than the policy's min-release-age of 7 day(s)"
        in err
    )
    assert _dry_run(server, "--policy", str(policy), "undated") == 3
    assert "gives no upload time" in capsys.readouterr().err

    policy.write_text(
        '[cooldown]\nmin-release-age = "P7D"\nexempt = ["lib"]\nunknown-upload-time = "trust"\n'
    )
    assert _dry_run(server, "--policy", str(policy), "lib", "undated") == 0
    assert "Would install lib-1.1 undated-1.0" in capsys.readouterr().out


def _pip_download(server: IndexServer, dest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-d",
            str(dest),
            "-i",
            server.simple_url,
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_uploaded_prior_to_means_what_pip_means(
    index: Index, server: IndexServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index.wheel("lib", "1.0", upload_time=datetime.datetime(2024, 1, 1, tzinfo=UTC))
    index.wheel("lib", "1.1", upload_time=datetime.datetime(2024, 6, 1, tzinfo=UTC))
    index.wheel("undated", "1.0").upload_time = None
    cutoff = "--uploaded-prior-to=2024-03-01T00:00:00Z"

    assert _dry_run(server, cutoff, "lib") == 0
    assert "Would install lib-1.0" in capsys.readouterr().out
    plain = _pip_download(server, tmp_path / "pip", cutoff, "lib")
    assert plain.returncode == 0 and (tmp_path / "pip/lib-1.0-py3-none-any.whl").is_file()

    # An index without upload times stops pip; safepip stops too, with the same status.
    assert _dry_run(server, cutoff, "undated") == 1
    assert "does not provide upload-time metadata" in capsys.readouterr().err
    plain = _pip_download(server, tmp_path / "pip2", cutoff, "undated")
    assert plain.returncode == 1 and "does not provide upload-time metadata" in plain.stderr

    report = tmp_path / "r.json"
    assert _dry_run(server, "--report", str(report), "undated") == 0  # no cutoff: no check
    assert json.loads(report.read_text())["install"][0]["metadata"]["name"] == "undated"
