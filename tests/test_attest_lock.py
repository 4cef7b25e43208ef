"""Publisher identities pinned in locks (PEP 740): `safepip lock --pin-attestations` records
them from the real recorded pairs served on 127.0.0.1, and `safepip install` from that lock
enforces them; a change is accepted only explicitly."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packaging.pylock import Pylock
from packaging.utils import canonicalize_name

from safepip.attest import Identity
from safepip.attestlock import read_locked_identities
from safepip.errors import UsageError
from tests.conftest import run_safepip
from tests.kit import IndexServer, tree_digest
from tests.test_attest import (
    CIRCLECI,
    GITHUB,
    GITHUB_SDIST,
    WHEEL,
    attested_index,
    provenance_of,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PROJECT = "circleci-sign-publish-example"
NAME = canonicalize_name(PROJECT)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verification is offline: any attempt to reach out goes to a proxy that is not there."""
    for key in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(key, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def _lock(server: IndexServer, cwd: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return run_safepip(
        "lock", "--python", sys.executable, "-i", server.simple_url, *args, cwd=cwd, env=env
    )


def _install(target: Path, lock: Path, *args: str):  # type: ignore[no-untyped-def]
    return run_safepip("install", "--python", str(target / "bin/python"), "-r", str(lock), *args)


def _pylock_identities(path: Path) -> dict[str, list[dict[str, str]]]:
    lock = Pylock.from_dict(tomllib.loads(path.read_text()))
    return {
        p.name: [dict(i) for i in p.attestation_identities]
        for p in lock.packages
        if p.attestation_identities
    }


def _without_extra(tmp_path: Path) -> dict[str, str]:
    """An environment in which the optional verifier cannot be imported."""
    blocker = tmp_path / "blocker"
    (blocker / "pypi_attestations").mkdir(parents=True)
    (blocker / "pypi_attestations" / "__init__.py").write_text(
        "raise ImportError('not installed')\n"
    )
    return dict(os.environ, PYTHONPATH=str(blocker))


@pytest.mark.parametrize("output", ["pylock.toml", "requirements.txt"])
def test_lock_pins_identity_and_install_enforces_it(
    output: str, target_venv: Path, tmp_path: Path
) -> None:
    index = attested_index()
    lock = tmp_path / output
    with IndexServer(index) as server:
        locked = _lock(server, tmp_path, "--pin-attestations", "-o", output, PROJECT, "plain")
        assert locked.returncode == 0, locked.stderr
        assert "trust on first use" in locked.stdout + locked.stderr
        assert read_locked_identities(str(lock)) == {NAME: CIRCLECI}  # and nothing for "plain"
        if output == "pylock.toml":
            assert _pylock_identities(lock) == {PROJECT: [CIRCLECI.as_dict()]}
        else:
            assert f"    # attestation: {CIRCLECI.to_json()}\n" in lock.read_text()

        # The publisher changes on the index between lock and install: refused, naming both.
        index.provenance[WHEEL] = provenance_of(GITHUB_SDIST)
        before = tree_digest(target_venv)
        refused = _install(target_venv, lock)
        assert refused.returncode == 3, refused.stderr
        assert "attestation-identity" in refused.stderr
        assert GITHUB.display in refused.stderr and CIRCLECI.display in refused.stderr
        assert "--accept-identity-change" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert tree_digest(target_venv) == before

        # The pinned publisher's provenance disappears: refused as well.
        del index.provenance[WHEEL]
        missing = _install(target_venv, lock)
        assert missing.returncode == 3, missing.stderr
        assert "attestation-missing" in missing.stderr and CIRCLECI.display in missing.stderr
        assert tree_digest(target_venv) == before

        # Served as it was when locked: installed, and reported as the pinned identity.
        index.provenance[WHEEL] = provenance_of(WHEEL)
        report = tmp_path / "report.json"
        bom = tmp_path / "bom.json"
        ok = _install(target_venv, lock, "--report", str(report), "--sbom", str(bom))
        assert ok.returncode == 0, ok.stderr
    findings = json.loads(report.read_text())["safepip"]["findings"]
    assert any(f["rule"] == "attested" and f["message"].endswith("as pinned") for f in findings)
    assert _sbom_identities(bom) == {PROJECT: CIRCLECI}


def _sbom_identities(path: Path) -> dict[str, Identity]:
    """The identities a schema-valid CycloneDX SBOM records per component."""
    bom = json.loads(path.read_text())
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom))
    assert error is None, error
    return {
        c["name"]: Identity.from_json(p["value"], "sbom")
        for c in bom["components"]
        for p in c["properties"]
        if p["name"] == "safepip:attestation:identity"
    }


@pytest.mark.parametrize("output", ["pylock.toml", "requirements.txt"])
def test_identity_edited_in_the_lock_is_enforced(
    output: str, target_venv: Path, tmp_path: Path
) -> None:
    lock = tmp_path / output
    with IndexServer(attested_index()) as server:
        assert _lock(server, tmp_path, "--pin-attestations", "-o", output, PROJECT).returncode == 0
        lock.write_text(lock.read_text().replace("refs/heads/pypi", "refs/heads/main"))
        refused = _install(target_venv, lock)
    assert refused.returncode == 3, refused.stderr
    assert "refs/heads/main" in refused.stderr and "refs/heads/pypi" in refused.stderr


def test_relock_with_changed_identity_needs_explicit_acceptance(tmp_path: Path) -> None:
    lock = tmp_path / "pylock.toml"
    with IndexServer(attested_index()) as server:
        assert _lock(server, tmp_path, "--pin-attestations", PROJECT).returncode == 0
        # As if the lock had been made when another workflow ref published the project.
        lock.write_text(lock.read_text().replace("refs/heads/pypi", "refs/heads/main"))
        edited = lock.read_text()
        refused = _lock(server, tmp_path, PROJECT)  # pins already in the output are kept
        assert refused.returncode == 3, refused.stderr
        assert "refs/heads/main" in refused.stderr and "refs/heads/pypi" in refused.stderr
        assert f"--upgrade-package {PROJECT} --accept-identity-change" in refused.stderr
        assert lock.read_text() == edited  # nothing written

        unnamed = _lock(server, tmp_path, "--accept-identity-change", PROJECT)
        assert unnamed.returncode == 2, unnamed.stderr
        assert "--upgrade-package" in unnamed.stderr

        accepted = _lock(
            server, tmp_path, "--upgrade-package", PROJECT, "--accept-identity-change", PROJECT
        )
        assert accepted.returncode == 0, accepted.stderr
        assert "accepted" in accepted.stderr
    assert read_locked_identities(str(lock)) == {NAME: CIRCLECI}
    command = tomllib.loads(lock.read_text())["tool"]["safepip"]["command"]
    assert "--accept-identity-change" not in command  # a one-off, never regenerated


def test_lock_refuses_provenance_that_does_not_verify(tmp_path: Path) -> None:
    index = attested_index()
    index.provenance[WHEEL] = provenance_of(GITHUB_SDIST)  # another file's provenance
    with IndexServer(index) as server:
        refused = _lock(server, tmp_path, "--pin-attestations", PROJECT)
    assert refused.returncode == 3, refused.stderr
    assert "attestation-invalid" in refused.stderr
    assert not (tmp_path / "pylock.toml").exists()


def test_lock_content_does_not_depend_on_the_extra(tmp_path: Path, target_venv: Path) -> None:
    """Without pinning, the lock is the same with or without the verifier; pinning without it
    fails with a hint naming the extra, and so does re-locking a lock that pins."""
    without = _without_extra(tmp_path)
    with IndexServer(attested_index()) as server:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        assert _lock(server, tmp_path / "a", PROJECT, "plain").returncode == 0
        assert _lock(server, tmp_path / "b", PROJECT, "plain", env=without).returncode == 0
        plain = (tmp_path / "a" / "pylock.toml").read_bytes()
        assert plain == (tmp_path / "b" / "pylock.toml").read_bytes()
        assert b"attestation-identities" not in plain

        asked = _lock(server, tmp_path / "b", "--pin-attestations", PROJECT, env=without)
        assert asked.returncode == 3, asked.stderr
        assert "safepip[attest]" in asked.stderr

        assert _lock(server, tmp_path / "a", "--pin-attestations", PROJECT).returncode == 0
        kept = _lock(server, tmp_path / "a", PROJECT, env=without)
        assert kept.returncode == 3, kept.stderr
        assert "pins publishers" in kept.stderr and "safepip[attest]" in kept.stderr

        # Installing from a lock that pins needs the verifier too: refused before pip runs.
        target = tmp_path / "a" / "pylock.toml"
        before = tree_digest(target_venv)
        installed = run_safepip(
            "install", "--python", str(target_venv / "bin/python"), "-r", str(target), env=without
        )
        assert installed.returncode == 3, installed.stderr
        assert "safepip[attest]" in installed.stderr
        assert tree_digest(target_venv) == before


def test_policy_key_pins_and_sbom_carries_identity(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[attestations]\npin = true\n")
    bom_path = tmp_path / "bom.json"
    with IndexServer(attested_index()) as server:
        locked = _lock(
            server, tmp_path, "--policy", str(policy), "--sbom", str(bom_path), PROJECT, "plain"
        )
    assert locked.returncode == 0, locked.stderr
    assert read_locked_identities(str(tmp_path / "pylock.toml")) == {NAME: CIRCLECI}
    assert _sbom_identities(bom_path) == {PROJECT: CIRCLECI}  # and none for "plain"


def test_requirements_comments_read_back(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text(
        '# attestation: {"kind": "GitHub", "repository": "x/y"}\n'  # before any pin
        "demo[extra]==1.0 \\\n"
        "    --hash=sha256:" + "0" * 64 + "\n"
        f"    # attestation: {GITHUB.to_json()}\n"
        "    # via -r requirements.in\n"
        "other==2.0\n"
    )
    assert read_locked_identities(str(path)) == {canonicalize_name("demo"): GITHUB}
    path.write_text(path.read_text() + f"    # attestation: {CIRCLECI.to_json()}\n")
    assert read_locked_identities(str(path)) == {
        canonicalize_name("demo"): GITHUB,
        canonicalize_name("other"): CIRCLECI,
    }
    path.write_text(path.read_text() + "    # attestation: {not json\n")
    with pytest.raises(UsageError, match="not JSON"):
        read_locked_identities(str(path))


def test_identity_matching() -> None:
    assert GITHUB.matches(GITHUB)
    with_environment = Identity.from_mapping({**GITHUB.as_dict(), "environment": "pypi"}, "t")
    assert GITHUB.matches(with_environment)  # a pin may leave a claim out
    assert not with_environment.matches(GITHUB)  # but a claim it names must be served
    assert not GITHUB.matches(CIRCLECI)
    assert Identity.from_json(GITHUB.to_json(), "t") == GITHUB
