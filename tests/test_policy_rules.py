"""The index precedence rules as a table: pages and policy in, a decision out (no network)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from safepip.errors import ConfigError
from safepip.indexpolicy import name_sources, read_index_policy
from safepip.models import FileLink, Hashes, IndexSource, ProjectPage
from safepip.policy import (
    Allowed,
    IndexDeclaration,
    IndexPin,
    IndexPolicy,
    Refused,
    SourcePage,
    decide,
    sources_to_look_up,
)
from safepip.policyfile import Policy, PolicySource

PUBLIC = IndexSource(url="https://public.invalid/simple/", public=True, name="pypi")
MIRROR = IndexSource(url="https://mirror.invalid/simple/", public=True, name="mirror")
CORP = IndexSource(url="https://corp.invalid/simple/", name="corp", internal=True)
CORP2 = IndexSource(url="https://corp2.invalid/simple/", name="corp2")
VENDOR = IndexSource(url="https://vendor.invalid/simple/", name="vendor")
PLAIN = IndexSource(url="https://plain.invalid/simple/")  # configured, but not named by policy


def _sha(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


@dataclass(frozen=True)
class Listed:
    """A file an index lists; ``content`` stands for its bytes (same content, same sha256)."""

    filename: str
    content: str = ""
    algorithm: str = "sha256"  # what the index says of the file (an md5-only index, say)

    def link(self, source: IndexSource) -> FileLink:
        content = self.content or f"{source.url}:{self.filename}"
        digest = hashlib.new(self.algorithm, content.encode()).hexdigest()
        return FileLink(
            filename=self.filename,
            url=source.url + "files/" + self.filename,
            index_url=source.url,
            hashes=Hashes.from_mapping({self.algorithm: digest}),
        )


def _pages(
    name: str,
    listing: dict[IndexSource, list[Listed]],
    tracks: dict[IndexSource, tuple[str, ...]] | None = None,
    alternates: dict[IndexSource, tuple[str, ...]] | None = None,
) -> list[SourcePage]:
    n = canonicalize_name(name)
    return [
        SourcePage(
            source,
            ProjectPage(
                name=n,
                index_url=source.url,
                files=tuple(f.link(source) for f in files),
                tracks=(tracks or {}).get(source, ()),
                alternate_locations=(alternates or {}).get(source, ()),
            ),
        )
        for source, files in listing.items()
    ]


def W(
    name: str, version: str, content: str = "", tag: str = "py3-none-any", algorithm: str = "sha256"
) -> Listed:
    return Listed(f"{name.replace('-', '_')}-{version}-{tag}.whl", content, algorithm)


POLICY = IndexPolicy(
    indexes=(
        IndexDeclaration("corp", CORP.url, internal=True),
        IndexDeclaration("corp2", CORP2.url),
        IndexDeclaration("vendor", VENDOR.url),
        IndexDeclaration("mirror", MIRROR.url, mirror=True),
    )
)


@dataclass(frozen=True)
class Case:
    id: str
    name: str
    listing: dict[IndexSource, list[Listed]]
    rule: str
    allowed: tuple[str, ...] = ()  # "index:filename" expected, when allowed
    policy: IndexPolicy = POLICY
    tracks: dict[IndexSource, tuple[str, ...]] = field(default_factory=dict)
    alternates: dict[IndexSource, tuple[str, ...]] = field(default_factory=dict)


CASES = [
    Case(
        "public only",
        "requests",
        {PUBLIC: [W("requests", "2.0", "r2")], CORP: []},
        "public",
        ("pypi:requests-2.0-py3-none-any.whl",),
    ),
    Case(
        "private name shadowed on the public index: taken only from the private index",
        "acme-billing",
        {PUBLIC: [W("acme-billing", "99.0", "evil")], CORP: [W("acme-billing", "1.0")]},
        "specific-owner",
        ("corp:acme_billing-1.0-py3-none-any.whl",),
    ),
    Case(
        "same, other ordering",
        "acme-billing",
        {CORP: [W("acme-billing", "1.0")], PUBLIC: [W("acme-billing", "99.0", "evil")]},
        "specific-owner",
        ("corp:acme_billing-1.0-py3-none-any.whl",),
    ),
    Case(
        "an unnamed extra index owns what it lists",
        "acme-billing",
        {PUBLIC: [W("acme-billing", "99.0", "evil")], PLAIN: [W("acme-billing", "1.0")]},
        "specific-owner",
        ("https://plain.invalid/simple/:acme_billing-1.0-py3-none-any.whl",),
    ),
    Case(
        "vendor re-hosting public wheels (numpy-like): versions merge",
        "numpyish",
        {
            PUBLIC: [W("numpyish", "1.26", "n126"), W("numpyish", "2.0", "n2")],
            VENDOR: [W("numpyish", "1.26", "n126")],
        },
        "mirror-merged",
        ("pypi:numpyish-1.26-py3-none-any.whl", "pypi:numpyish-2.0-py3-none-any.whl"),
    ),
    Case(
        "vendor local-version builds beside public-identical wheels of the same version",
        "torchish",
        {
            PUBLIC: [
                W("torchish", "2.1.0", "t21mac", "py3-none-macosx_11_0_arm64"),
                W("torchish", "2.2.0", "t22"),
            ],
            VENDOR: [
                W("torchish", "2.1.0+cpu", "t21cpu"),
                W("torchish", "2.1.0", "t21mac", "py3-none-macosx_11_0_arm64"),
            ],
        },
        "specific-owner",
        (
            "vendor:torchish-2.1.0+cpu-py3-none-any.whl",
            "vendor:torchish-2.1.0-py3-none-macosx_11_0_arm64.whl",
        ),
    ),
    Case(
        "virtual repository: internal 1.0 beside a proxied public 99.0",
        "acme-billing",
        {
            PUBLIC: [W("acme-billing", "99.0", "evil")],
            CORP: [W("acme-billing", "1.0"), W("acme-billing", "99.0", "evil")],
        },
        "confusion-signature",
    ),
    Case(
        "virtual repository on an md5-only index: the public filename gives the copy away",
        "acme-billing",
        {
            PUBLIC: [W("acme-billing", "99.0", "evil")],
            CORP: [
                W("acme-billing", "1.0", algorithm="md5"),
                W("acme-billing", "99.0", "evil", algorithm="md5"),
            ],
        },
        "confusion-signature",
    ),
    Case(
        "md5-only vendor re-hosting public wheels: merged by filename",
        "numpyish",
        {
            PUBLIC: [W("numpyish", "1.26", "n126"), W("numpyish", "2.0", "n2")],
            VENDOR: [W("numpyish", "1.26", "n126", algorithm="md5")],
        },
        "mirror-merged",
        ("pypi:numpyish-1.26-py3-none-any.whl", "pypi:numpyish-2.0-py3-none-any.whl"),
    ),
    Case(
        "two specific indexes with different files",
        "acme-billing",
        {CORP: [W("acme-billing", "1.0")], CORP2: [W("acme-billing", "2.0")]},
        "specific-indexes-differ",
    ),
    Case(
        "two specific indexes with the same files (replicas)",
        "acme-billing",
        {CORP: [W("acme-billing", "1.0", "a1")], CORP2: [W("acme-billing", "1.0", "a1")]},
        "specific-owner",
        ("corp:acme_billing-1.0-py3-none-any.whl",),
    ),
    Case(
        "full mirror beside the public index",
        "requests",
        {PUBLIC: [W("requests", "2.0", "r2")], VENDOR: [W("requests", "2.0", "r2")]},
        "mirror-merged",
        ("pypi:requests-2.0-py3-none-any.whl",),
    ),
    Case(
        "a declared mirror is public: it merges even with files of its own",
        "requests",
        {PUBLIC: [W("requests", "2.0", "r2")], MIRROR: [W("requests", "2.1", "r21")]},
        "public",
        ("pypi:requests-2.0-py3-none-any.whl", "mirror:requests-2.1-py3-none-any.whl"),
    ),
    Case(
        "pinned: only the pinned index, with the version bound",
        "acme-billing",
        {CORP: [W("acme-billing", "1.0"), W("acme-billing", "99.0", "evil")]},
        "pinned",
        ("corp:acme_billing-1.0-py3-none-any.whl",),
        policy=IndexPolicy(
            indexes=POLICY.indexes,
            pins=(IndexPin("acme-*", "corp", SpecifierSet("==1.0")),),
        ),
    ),
    Case(
        "allow-listed: merged as pip would",
        "shared-lib",
        {PUBLIC: [W("shared-lib", "2.0", "s2")], CORP: [W("shared-lib", "1.0")]},
        "allow-listed",
        ("pypi:shared_lib-2.0-py3-none-any.whl", "corp:shared_lib-1.0-py3-none-any.whl"),
        policy=IndexPolicy(indexes=POLICY.indexes, allow=("shared-*",)),
    ),
    Case(
        "strict: a name listed with different files on two indexes is refused",
        "torchish",
        {
            PUBLIC: [W("torchish", "2.2.0", "t22")],
            VENDOR: [W("torchish", "2.1.0+cpu", "t21cpu")],
        },
        "strict-different-files",
        policy=IndexPolicy(indexes=POLICY.indexes, strict=True),
    ),
    Case(
        "strict: byte-identical copies are not different files",
        "numpyish",
        {PUBLIC: [W("numpyish", "2.0", "n2")], VENDOR: [W("numpyish", "2.0", "n2")]},
        "mirror-merged",
        ("pypi:numpyish-2.0-py3-none-any.whl",),
        policy=IndexPolicy(indexes=POLICY.indexes, strict=True),
    ),
    Case(
        "PEP 708 tracks: the private project declares it tracks the public one",
        "shared-lib",
        {PUBLIC: [W("shared-lib", "2.0", "s2")], CORP: [W("shared-lib", "2.0+corp1")]},
        "pep708-tracks",
        ("pypi:shared_lib-2.0-py3-none-any.whl", "corp:shared_lib-2.0+corp1-py3-none-any.whl"),
        tracks={CORP: ("https://public.invalid/simple/shared-lib/",)},
    ),
    Case(
        "PEP 708 tracks of some other page says nothing",
        "acme-billing",
        {PUBLIC: [W("acme-billing", "99.0", "evil")], CORP: [W("acme-billing", "1.0")]},
        "specific-owner",
        ("corp:acme_billing-1.0-py3-none-any.whl",),
        tracks={CORP: ("https://public.invalid/simple/other/",)},
    ),
    Case(
        "PEP 708 alternate-locations agreed by every index: merged",
        "shared-lib",
        {PUBLIC: [W("shared-lib", "2.0", "s2")], CORP: [W("shared-lib", "1.0")]},
        "pep708-alternate-locations",
        ("pypi:shared_lib-2.0-py3-none-any.whl", "corp:shared_lib-1.0-py3-none-any.whl"),
        alternates={
            PUBLIC: ("https://corp.invalid/simple/shared-lib/",),
            CORP: ("https://public.invalid/simple/shared-lib/",),
        },
    ),
    Case(
        "PEP 708 alternate-locations claimed by one side only: ownership still applies",
        "acme-billing",
        {PUBLIC: [W("acme-billing", "99.0", "evil")], CORP: [W("acme-billing", "1.0")]},
        "specific-owner",
        ("corp:acme_billing-1.0-py3-none-any.whl",),
        alternates={PUBLIC: ("https://corp.invalid/simple/acme-billing/",)},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decision_table(case: Case) -> None:
    name = canonicalize_name(case.name)
    decision = decide(name, _pages(name, case.listing, case.tracks, case.alternates), case.policy)
    assert decision.rule == case.rule, decision
    if case.allowed:
        assert isinstance(decision, Allowed)
        got = {f"{_label(link.index_url)}:{link.filename}" for link in decision.links}
        assert got == set(case.allowed)
        assert _sha("evil") not in {link.sha256 for link in decision.links}
    else:
        assert isinstance(decision, Refused)
        assert decision.offers and all(o.versions for o in decision.offers)


def _label(index_url: str) -> str:
    for s in (PUBLIC, MIRROR, CORP, CORP2, VENDOR):
        if s.url == index_url:
            return str(s.name)
    return index_url


def test_confusion_refusal_names_every_index_versions_and_a_safe_pin() -> None:
    name = canonicalize_name("acme-billing")
    listing = {
        PUBLIC: [W("acme-billing", "99.0", "evil")],
        CORP: [W("acme-billing", "1.0"), W("acme-billing", "99.0", "evil")],
    }
    decision = decide(name, _pages(name, listing), POLICY)
    assert isinstance(decision, Refused)
    shown = [o.describe() for o in decision.offers]
    assert shown == ["pypi (public) offers 99.0", "corp (specific) offers 1.0, 99.0"]
    assert decision.settling_line == ('"acme-billing" = { index = "corp", versions = "==1.0" }')
    # The pin it suggests really settles it, without the attacker's version.
    pin = IndexPin("acme-billing", "corp", SpecifierSet("==1.0"))
    pinned = decide(name, _pages(name, {CORP: listing[CORP]}), IndexPolicy(pins=(pin,)))
    assert isinstance(pinned, Allowed)
    assert [link.filename for link in pinned.links] == ["acme_billing-1.0-py3-none-any.whl"]


def test_pinned_project_is_looked_up_only_on_its_index() -> None:
    sources = (PUBLIC, CORP, VENDOR)
    policy = IndexPolicy(
        indexes=(IndexDeclaration("vendor", VENDOR.url, explicit=True),),
        pins=(IndexPin("torch", "vendor"), IndexPin("acme-*", "corp")),
    )
    assert sources_to_look_up(canonicalize_name("acme-billing"), sources, policy) == (CORP,)
    assert sources_to_look_up(canonicalize_name("torch"), sources, policy) == (VENDOR,)
    by_url = IndexPolicy(pins=(IndexPin("acme-*", "HTTPS://corp.invalid/simple"),))
    assert sources_to_look_up(canonicalize_name("acme-x"), sources, by_url) == (CORP,)
    # an explicit index serves only the projects pinned to it
    assert sources_to_look_up(canonicalize_name("numpy"), sources, policy) == (PUBLIC, CORP)


def _policy(trusted: dict[str, object], project: dict[str, object] | None = None) -> Policy:
    return Policy(
        trusted=trusted,
        project=project or {},
        sources=(PolicySource(Path("/work/proj/safepip.toml"), trusted=False),),
    )


TRUSTED = {
    "indexes": {
        "corp": {"url": "https://corp.invalid/simple/", "internal": True},
        "mirror": {"url": "https://mirror.invalid/simple", "mirror": True},
        "pytorch": {"url": "https://vendor.invalid/whl/cpu/", "explicit": True},
    },
    "index-pins": {"torch": "pytorch", "Acme_*": "corp"},
    "index-policy": {"allow": ["shared-lib"]},
}


def test_policy_schema_is_read_and_names_configured_indexes() -> None:
    policy = read_index_policy(_policy(TRUSTED))
    assert [p.line for p in policy.pins] == [
        '"torch" = "pytorch"',
        '"acme-*" = "corp"',
    ]
    assert policy.allow == ("shared-lib",) and not policy.strict and not policy.warnings
    configured = (
        IndexSource(url="https://mirror.invalid/simple/"),
        IndexSource(url="https://corp.invalid/simple"),
    )
    named = name_sources(configured, policy)
    assert [(s.name, s.public, s.internal) for s in named] == [
        ("mirror", True, False),
        ("corp", False, True),
        ("pytorch", False, False),
    ]
    # --no-index: no index at all, so the policy's indexes are not added either
    find_links = (IndexSource(url="/wheels", kind="find-links"),)
    assert name_sources(find_links, policy) == find_links


def test_project_policy_may_only_tighten() -> None:
    project = {
        "indexes": {"evil": {"url": "https://evil.invalid/simple/"}},
        "index-pins": {
            "acme-billing": "mirror",  # to the public role: would undo ownership
            "torch": "corp",  # the user's policy already pins torch
            "evil-*": "evil",  # not an index the user declared
            "internal-tool": "corp",  # fine: a pin to the user's own index
        },
        "index-policy": {"allow": ["acme-billing"], "strict": True},
    }
    policy = read_index_policy(_policy(TRUSTED, project))
    assert policy.strict
    assert policy.allow == ("shared-lib",)
    assert policy.pin_for(canonicalize_name("internal-tool")) == IndexPin(
        "internal-tool", "corp", None, "project policy /work/proj/safepip.toml"
    )
    assert policy.pin_for(canonicalize_name("torch")).index == "pytorch"  # type: ignore[union-attr]
    assert policy.pin_for(canonicalize_name("acme-billing")).index == "corp"  # type: ignore[union-attr]
    assert policy.pin_for(canonicalize_name("evil-x")) is None
    text = "\n".join(policy.warnings)
    assert len(policy.warnings) == 5, text
    for fragment in ("[indexes.evil] ignored", '"acme-billing" = "mirror"', "allow ignored"):
        assert fragment in text
    loosen = read_index_policy(
        _policy({"index-policy": {"strict": True}}, {"index-policy": {"strict": False}})
    )
    assert loosen.strict and "strict = false ignored" in loosen.warnings[0]


@pytest.mark.parametrize(
    ("trusted", "message"),
    [
        ({"indexes": {"corp": {"url": "https://u:secret@corp.invalid/simple/"}}}, "credentials"),
        ({"indexes": {"corp": {"url": "https://corp.invalid/", "proxy": 1}}}, "unknown key"),
        ({"indexes": {"corp": "https://corp.invalid/"}}, "must be a table"),
        ({"indexes": {"pypi": {"url": "https://corp.invalid/"}}}, "cannot name an index"),
        ({"indexes": {"c": {"url": "https://c.invalid/", "mirror": "yes"}}}, "true or false"),
        (
            {"indexes": {"c": {"url": "https://c.invalid/", "mirror": True, "internal": True}}},
            "both a mirror",
        ),
        ({"index-pins": {"acme-*": "nowhere"}}, "does not declare"),
        ({"index-pins": {"acme": {"index": "pypi", "versions": "=>1"}}}, "not a version"),
        ({"index-policy": {"allow": "acme"}}, "list of project names"),
        ({"index-policy": {"strictest": True}}, "unknown key"),
    ],
)
def test_policy_errors_are_usage_errors(trusted: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        read_index_policy(_policy(trusted))
    assert "secret" not in info.value.render()


def test_proceed_without_an_unknown_index_is_a_usage_error() -> None:
    import requests

    from safepip.errors import UsageError
    from safepip.index import IndexClient
    from safepip.precedence import IndexLinks
    from safepip.report import RecordingReporter

    client = IndexClient(requests.Session(), (PUBLIC, CORP))
    try:
        with pytest.raises(UsageError, match="--proceed-without-index crop"):
            IndexLinks(client, POLICY, RecordingReporter(), ["crop"])
        reporter = RecordingReporter()
        warned = IndexPolicy(warnings=("a project policy tried something",))
        IndexLinks(client, warned, reporter, ["corp", CORP.url])
        assert reporter.messages == [("warning", "a project policy tried something")]
    finally:
        client.close()


def test_index_credentials_come_from_the_environment() -> None:
    from safepip.indexpolicy import credentials_from_environment

    policy = IndexPolicy(indexes=(IndexDeclaration("corp-eu", CORP.url), POLICY.indexes[1]))
    environ = {"SAFEPIP_INDEX_CORP_EU_USERNAME": "ci", "SAFEPIP_INDEX_CORP_EU_PASSWORD": "tok"}
    assert credentials_from_environment(policy, environ) == [(CORP.url, "ci", "tok")]
