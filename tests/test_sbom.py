"""CycloneDX SBOMs from --sbom, validated against the official schema."""

from __future__ import annotations

import datetime
import hashlib
import json
import sys
import uuid
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packaging.utils import canonicalize_name
from packaging.version import Version

from safepip.cli import main
from safepip.models import AlreadyInstalled, FileLink, IndexSource, InstalledDist, Pin, Plan
from safepip.sbom import build_sbom, purl
from tests.kit import Index, IndexServer, make_wheel

VALIDATOR = JsonStrictValidator(SchemaVersion.V1_6)


def _valid(bom: object) -> None:
    error = VALIDATOR.validate_str(json.dumps(bom))
    assert error is None, error


@pytest.mark.parametrize(
    ("name", "version", "index", "expected"),
    [
        ("Foo_Bar", "1.0", None, "pkg:pypi/foo-bar@1.0"),
        ("x", "1.0+local", None, "pkg:pypi/x@1.0+local"),
        (
            "x",
            "2",
            "https://user:pw@corp.example/simple/",
            "pkg:pypi/x@2?repository_url=https%3A%2F%2Fcorp.example%2Fsimple%2F",
        ),
    ],
)
def test_purl(name: str, version: str, index: str | None, expected: str) -> None:
    assert purl(name, version, index) == expected
    assert "pw" not in purl(name, version, index) and "user" not in purl(name, version, index)


def _meta(extra: str) -> bytes:
    return f"Metadata-Version: 2.4\nName: acme\nVersion: 1.0\n{extra}\n".encode()


@pytest.mark.parametrize(
    ("metadata", "licenses"),
    [
        (_meta("License-Expression: MIT OR Apache-2.0"), [{"expression": "MIT OR Apache-2.0"}]),
        (
            _meta("Classifier: License :: OSI Approved :: BSD License"),
            [{"license": {"name": "BSD License"}}],
        ),
        (_meta("License: Proprietary"), [{"license": {"name": "Proprietary"}}]),
        (_meta("License: UNKNOWN"), None),
        (b"", None),
    ],
)
def test_licences_and_schema(metadata: bytes, licenses: object) -> None:
    public = IndexSource(url="https://public.example/simple", public=True)
    link = FileLink(
        filename="acme-1.0-py3-none-any.whl",
        url="https://public.example/files/acme-1.0-py3-none-any.whl",
        index_url=public.url,
    )
    pins = (
        Pin(
            name=canonicalize_name("acme"),
            version=Version("1.0"),
            source=link,
            metadata=metadata,
            requires=("leaf>=1", "absent"),
        ),
        Pin(
            name=canonicalize_name("leaf"),
            version=Version("2.0"),
            source=AlreadyInstalled(
                InstalledDist(name=canonicalize_name("leaf"), version=Version("2.0"), requires=())
            ),
        ),
    )
    bom = build_sbom(
        Plan(pins=pins),
        {"acme": "ab" * 32},
        (public,),
        now=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
        serial=uuid.UUID(int=1),
    )
    _valid(bom)
    acme = bom["components"][0]
    assert acme["purl"] == "pkg:pypi/acme@1.0"  # the public index needs no repository_url
    assert acme["hashes"] == [{"alg": "SHA-256", "content": "ab" * 32}]
    assert acme.get("licenses") == licenses
    assert bom["dependencies"][0] == {
        "ref": "pkg:pypi/acme@1.0",
        "dependsOn": ["pkg:pypi/leaf@2.0"],
    }


def test_install_writes_a_valid_sbom(
    index: Index, server: IndexServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index.add(
        make_wheel(
            "app",
            "1.0",
            requires=["lib>=1"],
            metadata_override="Metadata-Version: 2.4\nName: app\nVersion: 1.0\n"
            "License-Expression: MIT\nRequires-Dist: lib>=1\n\n",
        ),
        project="app",
    )
    lib = index.wheel("lib", "2.0")
    out = tmp_path / "bom.json"
    code = main(
        [
            "install",
            "--dry-run",
            "--python",
            sys.executable,
            "-i",
            server.simple_url,
            "--sbom",
            str(out),
            "app",
        ]
    )
    assert code == 0, capsys.readouterr().err
    bom = json.loads(out.read_text())
    _valid(bom)
    by_name = {c["name"]: c for c in bom["components"]}
    assert set(by_name) == {"app", "lib"}
    assert by_name["lib"]["hashes"][0]["content"] == hashlib.sha256(lib.data).hexdigest()
    assert by_name["lib"]["hashes"][0]["content"] == lib.sha256
    assert by_name["app"]["licenses"] == [{"expression": "MIT"}]
    assert by_name["app"]["purl"].startswith("pkg:pypi/app@1.0?repository_url=http")
    index_prop = {p["name"]: p["value"] for p in by_name["lib"]["properties"]}["safepip:index"]
    assert index_prop == server.simple_url
    deps = {d["ref"]: d["dependsOn"] for d in bom["dependencies"]}
    assert deps[by_name["app"]["bom-ref"]] == [by_name["lib"]["bom-ref"]]


def test_lock_writes_a_valid_sbom(
    index: Index,
    server: IndexServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    index.wheel("app", "1.0", requires=["lib>=1"])
    lib = index.wheel("lib", "2.0")
    out = tmp_path / "bom.json"
    code = main(
        [
            "lock",
            "--python",
            sys.executable,
            "-i",
            server.simple_url,
            "-o",
            str(tmp_path / "pylock.toml"),
            "--sbom",
            str(out),
            "app",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "pylock.toml").is_file()
    bom = json.loads(out.read_text())
    _valid(bom)
    by_name = {c["name"]: c for c in bom["components"]}
    assert set(by_name) == {"app", "lib"}
    assert by_name["lib"]["hashes"][0]["content"] == lib.sha256
