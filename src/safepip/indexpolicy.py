"""The index part of the policy files (``[indexes.NAME]``, ``[index-pins]``, ``[index-policy]``),
checked and typed; a project's own policy may only tighten it. Also names the configured indexes."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from safepip.errors import ConfigError
from safepip.models import IndexSource
from safepip.policy import IndexDeclaration, IndexPin, IndexPolicy
from safepip.policyfile import Policy

__all__ = [
    "PUBLIC_INDEX_NAME",
    "credentials_from_environment",
    "name_sources",
    "read_index_policy",
]

PUBLIC_INDEX_NAME = "pypi"  # what the policy calls pip's default index
_INDEX_KEYS = frozenset({"url", "mirror", "explicit", "internal"})
_RULES_KEYS = frozenset({"strict", "allow"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SEPARATORS = re.compile(r"[-_.]+")


def _normalize_pattern(pattern: str) -> str:
    """A project name or glob, normalized as PEP 503 normalizes names."""
    return _SEPARATORS.sub("-", pattern).lower()


def _norm_url(url: str) -> str:
    return url.strip().rstrip("/").lower()


def _public_url() -> str:
    from pip._internal.models.index import PyPI

    return str(PyPI.simple_url)


def _table(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def _flag(table: Mapping[str, Any], key: str, where: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true or false, not {value!r}")
    return value


def _declaration(name: str, table: Any) -> IndexDeclaration:
    where = f"policy [indexes.{name}]"
    if not _NAME.match(name) or name == PUBLIC_INDEX_NAME:
        raise ConfigError(
            f"policy: {name!r} cannot name an index",
            hint=f"use letters, digits, '.', '_' or '-'; {PUBLIC_INDEX_NAME!r} is pip's default index",
        )
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table with a url")
    unknown = set(table) - _INDEX_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {sorted(unknown)[0]!r}",
            hint="an index table takes url, mirror, explicit and internal",
        )
    url = table.get("url")
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"{where}: url must be an index URL, e.g. https://host/simple/")
    if "@" in url.split("://", 1)[1].split("/", 1)[0]:
        raise ConfigError(
            f"{where}: the url carries credentials; a policy file never holds them",
            hint=f"remove them from the url and set SAFEPIP_INDEX_{_env_name(name)}_USERNAME "
            "and _PASSWORD, or use .netrc or keyring",
        )
    decl = IndexDeclaration(
        name=name,
        url=url,
        mirror=_flag(table, "mirror", where),
        explicit=_flag(table, "explicit", where),
        internal=_flag(table, "internal", where),
    )
    if decl.mirror and decl.internal:
        raise ConfigError(
            f"{where}: an index cannot be both a mirror of the public index and internal"
        )
    return decl


def _pin(pattern: str, value: Any, origin: str) -> IndexPin:
    where = f"{origin} [index-pins] {pattern!r}"
    versions: SpecifierSet | None = None
    if isinstance(value, Mapping):
        unknown = set(value) - {"index", "versions"}
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        raw_versions = value.get("versions")
        if raw_versions is not None:
            if not isinstance(raw_versions, str):
                raise ConfigError(f"{where}: versions must be a string such as '==1.0'")
            try:
                versions = SpecifierSet(raw_versions)
            except InvalidSpecifier:
                raise ConfigError(f"{where}: {raw_versions!r} is not a version specifier") from None
        value = value.get("index")
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"{where} must name an index", hint='e.g. "acme-*" = "corp" or torch = "pytorch"'
        )
    return IndexPin(_normalize_pattern(pattern), value, versions, origin)


def _allow_list(rules: Mapping[str, Any], where: str) -> tuple[str, ...]:
    allow = rules.get("allow", [])
    if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
        raise ConfigError(f"{where}: allow must be a list of project names or globs")
    return tuple(_normalize_pattern(a) for a in allow)


def _check_rules(rules: Mapping[str, Any], where: str) -> None:
    unknown = set(rules) - _RULES_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {sorted(unknown)[0]!r}",
            hint="[index-policy] takes strict and allow",
        )
    _flag(rules, "strict", where)


def _ordered(pins: Sequence[IndexPin]) -> tuple[IndexPin, ...]:
    return tuple(sorted(pins, key=lambda p: p.is_glob))


def read_index_policy(policy: Policy) -> IndexPolicy:
    """The trusted index policy, tightened (never loosened) by the project's own policy."""
    trusted = policy.trusted
    indexes = tuple(
        _declaration(str(n), t) for n, t in _table(trusted, "indexes", "policy").items()
    )
    names = {d.name for d in indexes} | {PUBLIC_INDEX_NAME}
    pins = [_pin(str(p), v, "policy") for p, v in _table(trusted, "index-pins", "policy").items()]
    for pin in pins:
        if pin.index not in names and "://" not in pin.index:
            raise ConfigError(
                f"policy [index-pins] {pin.pattern!r} names the index {pin.index!r}, which the "
                "policy does not declare",
                hint=f"declare it: [indexes.{pin.index}] url = ...",
            )
    rules = _table(trusted, "index-policy", "policy")
    _check_rules(rules, "policy [index-policy]")
    base = IndexPolicy(
        indexes=indexes,
        pins=_ordered(pins),
        allow=_allow_list(rules, "policy [index-policy]"),
        strict=_flag(rules, "strict", "policy"),
    )
    return _tighten(base, policy.project, _project_where(policy))


def _project_where(policy: Policy) -> str:
    paths = [str(s.path) for s in policy.sources if not s.trusted]
    return "project policy " + (", ".join(paths) if paths else "")


def _tighten(base: IndexPolicy, project: Mapping[str, Any], where: str) -> IndexPolicy:
    """Apply what a project policy may do (pins to the user's own indexes, strict on), and say
    what it tried that it may not (add an index, an allow-list entry, an opt-out)."""
    warnings: list[str] = []
    for name in _table(project, "indexes", where):
        warnings.append(
            f"{where}: [indexes.{name}] ignored: only your own policy may declare an index"
        )
    own = {d.name for d in base.indexes if not d.mirror}
    pins: list[IndexPin] = []
    for pattern, value in _table(project, "index-pins", where).items():
        pin = _pin(str(pattern), value, where)
        trusted_pin = next((p for p in base.pins if p.pattern == pin.pattern), None)
        if pin.index not in own:
            warnings.append(
                f"{where}: [index-pins] {pin.line} ignored: a project policy may pin only to an index your own "
                "policy declares, and not to the public index or a mirror of it"
            )
        elif trusted_pin is not None:
            warnings.append(f"{where}: {pin.line} ignored: your policy has {trusted_pin.line}")
        else:
            pins.append(pin)
    rules = _table(project, "index-policy", where)
    _check_rules(rules, f"{where} [index-policy]")
    if rules.get("allow"):
        warnings.append(
            f"{where}: [index-policy] allow ignored: only your own policy may allow-list projects"
        )
    if rules.get("strict") is False:
        warnings.append(f"{where}: [index-policy] strict = false ignored: it may only turn it on")
    strict = base.strict or rules.get("strict") is True
    return IndexPolicy(
        indexes=base.indexes,
        pins=base.pins + _ordered(pins),
        allow=base.allow,
        strict=strict,
        warnings=tuple(warnings),
    )


def name_sources(
    sources: Sequence[IndexSource], index_policy: IndexPolicy
) -> tuple[IndexSource, ...]:
    """Give each configured index its policy name and role, and add the policy's own indexes
    (unless no index is used at all: ``--no-index``)."""
    by_url = {_norm_url(d.url): d for d in index_policy.indexes}
    public_url = _norm_url(_public_url())
    out: list[IndexSource] = []
    seen: set[str] = set()
    for source in sources:
        key = _norm_url(source.url)
        decl = by_url.get(key) if source.kind == "index" else None
        if decl is not None:
            source = IndexSource(
                url=source.url,
                kind=source.kind,
                public=source.public or decl.mirror,
                name=decl.name,
                internal=decl.internal,
            )
        elif source.kind == "index" and key == public_url:
            source = IndexSource(url=source.url, kind="index", public=True, name=PUBLIC_INDEX_NAME)
        seen.add(key)
        out.append(source)
    if any(s.kind == "index" for s in sources):
        out.extend(
            IndexSource(url=d.url, public=d.mirror, name=d.name, internal=d.internal)
            for d in index_policy.indexes
            if _norm_url(d.url) not in seen
        )
    return tuple(out)


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def credentials_from_environment(
    index_policy: IndexPolicy, environ: Mapping[str, str]
) -> list[tuple[str, str, str]]:
    """``SAFEPIP_INDEX_<NAME>_USERNAME`` / ``_PASSWORD`` for each declared index."""
    creds: list[tuple[str, str, str]] = []
    for d in index_policy.indexes:
        prefix = f"SAFEPIP_INDEX_{_env_name(d.name)}_"
        user = environ.get(prefix + "USERNAME")
        password = environ.get(prefix + "PASSWORD")
        if user or password:
            creds.append((d.url, user or "", password or ""))
    return creds
