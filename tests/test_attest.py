"""PEP 740 attestations: real recorded files and provenance (GitHub, GitLab, Google, CircleCI
publishers) verified offline, served from 127.0.0.1 as JSON (api 1.3) and HTML indexes."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from safepip.attest import (
    Attested,
    Expectations,
    Identity,
    Rejected,
    Unattested,
    decide,
    expectations_from,
    verify_provenance,
)
from safepip.errors import UsageError
from tests.conftest import run_safepip
from tests.kit import Index, IndexServer, tree_digest

DATA = Path(__file__).parent / "data" / "attestations"
WHEEL = "circleci_sign_publish_example-0.0.1.dev137-py3-none-any.whl"
GITHUB_SDIST = "pypi_attestations-0.0.19.tar.gz"
GOOGLE_SDIST = "gcb_attestation_test-0.0.0.tar.gz"
GITLAB_SDIST = "gitlab_oidc_project-0.0.3.tar.gz"

CIRCLECI = Identity.from_mapping(
    {
        "kind": "CircleCI",
        "project_id": "fdd9283f-e619-46af-8f9c-851f7d3e8b2b",
        "pipeline_definition_id": "8e4f8ab2-8d7c-4827-9f15-de076d6d647f",
        "vcs_origin": "github.com/CircleCI-Public/sign-and-publish-examples",
        "vcs_ref": "refs/heads/pypi",
    },
    "test",
)
GITHUB = Identity.from_mapping(
    {"kind": "GitHub", "repository": "trailofbits/pypi-attestations", "workflow": "release.yml"},
    "test",
)
GOOGLE = Identity.from_mapping(
    {"kind": "Google", "email": "919436158236-compute@developer.gserviceaccount.com"}, "test"
)
GITLAB = Identity.from_mapping(
    {
        "kind": "GitLab",
        "repository": "facutuesca/gitlab-oidc-project",
        "workflow_filepath": ".gitlab-ci.yml",
    },
    "test",
)


def sha256_of(name: str) -> str:
    return hashlib.sha256((DATA / name).read_bytes()).hexdigest()


def provenance_of(name: str) -> bytes:
    return (DATA / f"{name}.provenance").read_bytes()


def gitlab_provenance() -> bytes:
    """The GitLab pair ships a bare attestation: wrap it in a provenance object."""
    attestation = json.loads((DATA / f"{GITLAB_SDIST}.publish.attestation").read_bytes())
    return json.dumps(
        {
            "version": 1,
            "attestation_bundles": [
                {"publisher": GITLAB.as_dict(), "attestations": [attestation]},
            ],
        }
    ).encode()


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verification is offline: any attempt to reach out goes to a proxy that is not there."""
    for key in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(key, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


# --- offline verification of the recorded pairs ---------------------------------------------


@pytest.mark.parametrize(
    ("filename", "provenance", "identity"),
    [
        (WHEEL, lambda: provenance_of(WHEEL), CIRCLECI),
        (GITHUB_SDIST, lambda: provenance_of(GITHUB_SDIST), GITHUB),
        (GOOGLE_SDIST, lambda: provenance_of(GOOGLE_SDIST), GOOGLE),
        (GITLAB_SDIST, gitlab_provenance, GITLAB),
    ],
    ids=["circleci", "github", "google", "gitlab"],
)
def test_recorded_pairs_verify_against_their_publisher(
    filename: str, provenance: object, identity: Identity, tmp_path: Path
) -> None:
    raw = provenance()  # type: ignore[operator]
    pinned = verify_provenance(raw, filename, sha256_of(filename), identity, tmp_path)
    assert pinned == Attested(filename, identity)
    shown = verify_provenance(raw, filename, sha256_of(filename), None, tmp_path)
    assert shown == Attested(filename, identity)


def test_flipped_byte_is_rejected(tmp_path: Path) -> None:
    data = bytearray((DATA / GITHUB_SDIST).read_bytes())
    data[100] ^= 1
    outcome = verify_provenance(
        provenance_of(GITHUB_SDIST),
        GITHUB_SDIST,
        hashlib.sha256(bytes(data)).hexdigest(),
        GITHUB,
        tmp_path,
    )
    assert isinstance(outcome, Rejected)
    assert "digest" in outcome.reason


def test_renamed_file_is_rejected(tmp_path: Path) -> None:
    outcome = verify_provenance(
        provenance_of(GITHUB_SDIST),
        "pypi_attestations-0.0.20.tar.gz",
        sha256_of(GITHUB_SDIST),
        None,
        tmp_path,
    )
    assert isinstance(outcome, Rejected)
    assert "name" in outcome.reason


def test_provenance_swapped_between_files_is_rejected(tmp_path: Path) -> None:
    outcome = verify_provenance(
        provenance_of(GOOGLE_SDIST), GITHUB_SDIST, sha256_of(GITHUB_SDIST), None, tmp_path
    )
    assert isinstance(outcome, Rejected)


@pytest.mark.parametrize(
    "wrong",
    [
        {"kind": "GitHub", "repository": "evil/pypi-attestations", "workflow": "release.yml"},
        {"kind": "GitHub", "repository": "trailofbits/pypi-attestations", "workflow": "x.yml"},
        {"kind": "GitLab", "repository": "trailofbits/pypi-attestations", "workflow_filepath": "a"},
    ],
    ids=["repository", "workflow", "kind"],
)
def test_wrong_identity_pinned_is_rejected_naming_both(
    wrong: dict[str, str], tmp_path: Path
) -> None:
    expected = Identity.from_mapping(wrong, "test")
    outcome = verify_provenance(
        provenance_of(GITHUB_SDIST), GITHUB_SDIST, sha256_of(GITHUB_SDIST), expected, tmp_path
    )
    assert isinstance(outcome, Rejected)
    assert outcome.served == GITHUB
    finding = decide(
        canonicalize_name("pypi-attestations"),
        outcome,
        Expectations(identities={canonicalize_name("pypi-attestations"): expected}),
    )
    assert finding is not None and finding.action == "refuse"
    assert GITHUB.display in finding.message and expected.display in finding.message


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[]", b'{"version": 1, "attestation_bundles": []}', b'{"version": 2}'],
)
def test_malformed_provenance_is_rejected(body: bytes, tmp_path: Path) -> None:
    outcome = verify_provenance(body, GITHUB_SDIST, sha256_of(GITHUB_SDIST), None, tmp_path)
    assert isinstance(outcome, Rejected)


def test_decisions_table() -> None:
    name = canonicalize_name("demo")
    pinned = Expectations(identities={name: GITHUB})
    required = Expectations(required=("*",))
    nothing = Expectations()
    missing = Unattested("demo-1.0.tar.gz", "the index serves no provenance")
    ok = Attested("demo-1.0.tar.gz", GITHUB)
    assert decide(name, ok, nothing).action == "report"  # type: ignore[union-attr]
    assert decide(name, ok, pinned).action == "report"  # type: ignore[union-attr]
    assert decide(name, missing, nothing) is None
    assert decide(name, missing, pinned).rule == "attestation-missing"  # type: ignore[union-attr]
    assert decide(name, missing, required).rule == "attestation-required"  # type: ignore[union-attr]
    bad = Rejected("demo-1.0.tar.gz", "signature does not verify")
    assert decide(name, bad, nothing).action == "refuse"  # type: ignore[union-attr]


def test_policy_expectations_merge() -> None:
    user = {
        "require": ["acme-*"],
        "identities": {"Demo": {"kind": "github", "repository": "o/r", "workflow": "w.yml"}},
    }
    project = {"require": True, "identities": {"demo": {"kind": "GitLab", "repository": "x/y"}}}
    exp = expectations_from(user, project, require_flag=False)
    demo = canonicalize_name("demo")
    assert exp.identities[demo].kind == "GitHub"  # the user's own pin wins over the project's
    assert exp.requires(canonicalize_name("acme-billing"))
    assert exp.requires(canonicalize_name("anything"))  # the project may tighten to "all"
    locked = expectations_from(user, {}, require_flag=False, locked={demo: GITLAB})
    assert locked.identities[demo] == GITLAB and locked.sources[demo] == "lock"
    with pytest.raises(UsageError):
        expectations_from({"identities": {"x": {"kind": "Bitbucket"}}}, {}, require_flag=False)
    with pytest.raises(UsageError):
        expectations_from({"require": "yes"}, {}, require_flag=False)


# --- end to end through a local index -------------------------------------------------------


def attested_index() -> Index:
    index = Index()
    index.add(((WHEEL, (DATA / WHEEL).read_bytes())), project="circleci-sign-publish-example")
    index.provenance[WHEEL] = provenance_of(WHEEL)
    index.wheel("plain", "1.0")
    return index


def policy_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


CIRCLECI_POLICY = """
[attestations.identities.circleci-sign-publish-example]
kind = "CircleCI"
project_id = "fdd9283f-e619-46af-8f9c-851f7d3e8b2b"
pipeline_definition_id = "8e4f8ab2-8d7c-4827-9f15-de076d6d647f"
vcs_origin = "github.com/CircleCI-Public/sign-and-publish-examples"
vcs_ref = "refs/heads/pypi"
"""


@pytest.mark.parametrize("fmt", ["json", "html"])
def test_install_verifies_and_reports_identity(fmt: str, target_venv: Path, tmp_path: Path) -> None:
    with IndexServer(attested_index(), format=fmt) as server:
        report = tmp_path / "report.json"
        result = run_safepip(
            "install",
            "--python",
            str(target_venv / "bin/python"),
            "--index-url",
            server.simple_url,
            "--policy",
            str(policy_file(tmp_path, CIRCLECI_POLICY)),
            "--report",
            str(report),
            "circleci-sign-publish-example",
        )
        assert result.returncode == 0, result.stderr
        assert "TUF" not in result.stderr  # the verifier's own log lines stay out of the output
        assert any(p.endswith(f"/provenance/{WHEEL}") for _, p, _ in server.requests)
    findings = json.loads(report.read_text())["safepip"]["findings"]
    attested = [f for f in findings if f["rule"] == "attested"]
    assert attested and "CircleCI" in attested[0]["details"]["identity"]


def test_wrong_pinned_identity_refuses_and_leaves_target(target_venv: Path, tmp_path: Path) -> None:
    policy = CIRCLECI_POLICY.replace("refs/heads/pypi", "refs/heads/main")
    before = tree_digest(target_venv)
    with IndexServer(attested_index()) as server:
        result = run_safepip(
            "install",
            "--python",
            str(target_venv / "bin/python"),
            "--index-url",
            server.simple_url,
            "--policy",
            str(policy_file(tmp_path, policy)),
            "circleci-sign-publish-example",
        )
    assert result.returncode == 3, result.stderr
    assert "refs/heads/main" in result.stderr and "refs/heads/pypi" in result.stderr
    assert "Traceback" not in result.stderr
    assert tree_digest(target_venv) == before


def _answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    def hook(handler: BaseHTTPRequestHandler) -> bool:
        handler.send_response(status)
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        return True

    return hook


@pytest.mark.parametrize(
    ("case", "hook"),
    [
        ("404", _answer(404, b"no")),
        ("403", _answer(403, b"no")),
        ("malformed", _answer(200, b'{"version": 1, "attestation_bundles": [{}]}')),
        ("oversized", _answer(200, b"{" + b" " * (3 * 1024 * 1024) + b"}")),
        ("redirect", _answer(302, b"", {"Location": "http://127.0.0.2:9/provenance"})),
    ],
)
def test_provenance_faults_while_pinned_refuse(
    case: str, hook: object, target_venv: Path, tmp_path: Path
) -> None:
    before = tree_digest(target_venv)
    with IndexServer(attested_index()) as server:
        server.hooks[f"/provenance/{WHEEL}"] = hook  # type: ignore[assignment]
        result = run_safepip(
            "install",
            "--python",
            str(target_venv / "bin/python"),
            "--index-url",
            server.simple_url,
            "--policy",
            str(policy_file(tmp_path, CIRCLECI_POLICY)),
            "circleci-sign-publish-example",
        )
    assert result.returncode == 3, (case, result.stderr)
    assert "error: attestation" in result.stderr
    assert "Traceback" not in result.stderr
    assert tree_digest(target_venv) == before


def test_require_attestations_refuses_unattested(target_venv: Path) -> None:
    with IndexServer(attested_index()) as server:
        args = ("--python", str(target_venv / "bin/python"), "--index-url", server.simple_url)
        refused = run_safepip("install", *args, "--require-attestations", "plain")
        assert refused.returncode == 3, refused.stderr
        assert "attestation-required" in refused.stderr
        allowed = run_safepip("install", *args, "plain")
        assert allowed.returncode == 0, allowed.stderr


def test_missing_extra_named_in_hint_only_when_needed(target_venv: Path, tmp_path: Path) -> None:
    """Without the optional verifier, a policy needing it fails with a hint naming the extra;
    without such a policy, installs go on as before."""
    # The verifier hidden as if never installed: neither found nor importable.
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] == 'pypi_attestations':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    env = dict(os.environ, PYTHONPATH=str(blocker))
    with IndexServer(attested_index()) as server:
        args = ("--python", str(target_venv / "bin/python"), "--index-url", server.simple_url)
        refused = run_safepip(
            "install",
            *args,
            "--policy",
            str(policy_file(tmp_path, CIRCLECI_POLICY)),
            "circleci-sign-publish-example",
            env=env,
        )
        assert refused.returncode == 3, refused.stderr
        assert "safepip[attest]" in refused.stderr
        plain = run_safepip("install", *args, "circleci-sign-publish-example", env=env)
        assert plain.returncode == 0, plain.stderr
        assert not any("/provenance/" in p for _, p, _ in server.requests)


def test_verifier_is_imported_lazily() -> None:
    """The heavy verifier stays out of start-up: importing the pipeline does not load it."""
    import subprocess

    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, safepip.cli, safepip.pipeline; print('pypi_attestations' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "False"


_NO_PROVENANCE_RUN = r"""
import json, sys
from pathlib import Path
from packaging.version import Version
from safepip.attest import Expectations, attestation_findings
from safepip.models import FileLink, Pin, VerifiedFile
from safepip.net import NetSettings, make_session

base, count = sys.argv[1], int(sys.argv[2])
files = [
    VerifiedFile(
        pin=Pin(
            name=f"p{i}",
            version=Version("1.0"),
            source=FileLink(
                filename=f"p{i}-1.0-py3-none-any.whl",
                url=f"{base}/files/p{i}-1.0-py3-none-any.whl",
                index_url=f"{base}/simple/",
                provenance_url=f"{base}/provenance/p{i}-1.0-py3-none-any.whl",
            ),
        ),
        path=Path("unused"),
        sha256="0" * 64,
    )
    for i in range(count)
]
findings = attestation_findings(
    make_session(NetSettings()), files, Expectations(), timeout=10, trust_root_dir=None, workers=4
)
print(json.dumps({"verifier": "pypi_attestations" in sys.modules, "findings": len(findings)}))
"""


def test_provenance_an_index_lacks_costs_neither_connections_nor_the_verifier() -> None:
    """Files whose provenance the index answers 404 for: every answer is read to its end, so the
    few connections of the pool serve them all (no new name lookup and handshake per file), and
    the verifier, slow to import, is never imported."""
    import subprocess

    count, clients = 24, []
    with IndexServer(Index()) as server:

        def not_found(handler: BaseHTTPRequestHandler) -> bool:
            clients.append(handler.client_address)
            body = b'{"message": "no provenance for this file"}'
            handler.send_response(404)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return True

        for i in range(count):
            server.hooks[f"/provenance/p{i}-1.0-py3-none-any.whl"] = not_found
        run = subprocess.run(
            [sys.executable, "-c", _NO_PROVENANCE_RUN, server.url, str(count)],
            capture_output=True,
            text=True,
            check=True,
        )
    result = json.loads(run.stdout)
    assert len(clients) == count
    assert len(set(clients)) <= 4, f"{len(set(clients))} connections for {count} answers"
    assert result["verifier"] is False
