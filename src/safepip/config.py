"""pip's command line, pip.conf files and ``PIP_*`` variables, read by pip's own parser, turned
into one frozen :class:`Settings`."""

from __future__ import annotations

import copy
import datetime
import optparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from packaging.utils import NormalizedName, canonicalize_name

from safepip.errors import ConfigError, SafepipError, UsageError
from safepip.hosts import check_insecure_sources
from safepip.lock import LockSource
from safepip.models import IndexSource, UserRequirement
from safepip.net import NetSettings, strip_credentials
from safepip.options import refuse_given_options
from safepip.policyfile import Policy

__all__ = [
    "PASSTHROUGH_COMMANDS",
    "PIPELINE_COMMANDS",
    "Settings",
    "parse_pipeline_args",
    "split_command",
]

PIPELINE_COMMANDS = frozenset({"install", "download", "wheel", "lock"})
PASSTHROUGH_COMMANDS = frozenset(
    {
        "list",
        "freeze",
        "show",
        "check",
        "inspect",
        "config",
        "cache",
        "uninstall",
        "help",
        "hash",
        "debug",
        "completion",
        "search",
        "index",
    }
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a pipeline run needs to know from the command line and configuration."""

    command: str
    requirements: tuple[UserRequirement, ...]
    constraints: tuple[UserRequirement, ...]
    sources: tuple[IndexSource, ...]
    net: NetSettings
    build_constraints: tuple[str, ...] = ()  # --build-constraint files
    python: str | None = None
    upgrade: bool = False
    upgrade_strategy: str = "only-if-needed"
    force_reinstall: bool = False
    ignore_installed: bool = False
    no_deps: bool = False
    pre: bool = False
    prerelease_names: frozenset[NormalizedName] = frozenset()
    final_only_names: frozenset[NormalizedName] = frozenset()
    only_binary: frozenset[str] = frozenset()
    no_binary: frozenset[str] = frozenset()
    prefer_binary: bool = False
    require_hashes: bool = False
    dry_run: bool = False
    report: str | None = None
    target_dir: str | None = None
    user: bool = False
    prefix: str | None = None
    root: str | None = None
    compile: bool = True
    no_warn_script_location: bool = False
    no_warn_conflicts: bool = False
    root_user_action: str | None = None
    break_system_packages: bool = False
    ignore_requires_python: bool = False
    verbosity: int = 0
    cache_dir: Path | None = None
    uploaded_prior_to: datetime.datetime | None = None
    platforms: tuple[str, ...] = ()
    python_version: str | None = None
    implementation: str | None = None
    abis: tuple[str, ...] = ()
    output_dir: str | None = None
    exists_action: tuple[str, ...] = ()
    progress_bar: str = "on"
    log: str | None = None
    no_color: bool = False
    allowed_http_hosts: frozenset[str] = frozenset()  # plain-HTTP hosts the user's policy allows
    trusted_hosts: frozenset[str] = frozenset()  # --trusted-host, PIP_TRUSTED_HOST, config
    isolated: bool = False
    require_virtualenv: bool = False
    requested_order: tuple[NormalizedName, ...] = field(default=())
    locks: tuple[LockSource, ...] = ()  # pylock.toml files given to -r / --group
    # hashed requirement files written by `safepip lock`, with the environments they were for
    lock_environments: tuple[tuple[str, tuple[str, ...]], ...] = ()
    output_file: str | None = None  # lock's -o/--output
    command_line: tuple[str, ...] = ()  # the arguments as given (lock records how to regenerate)
    policy: Policy = field(default_factory=Policy)
    # safepip's own options (SAFEPIP_OPTIONS), as given: {"--policy": ["p.toml"], ...}
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # --src as given (else None: pip's default depends on the target, see direct.source_dir)
    src_dir: str | None = None

    @property
    def custom_tags(self) -> bool:
        return bool(self.platforms or self.python_version or self.implementation or self.abis)

    def allows_binary(self, name: NormalizedName) -> bool:
        return _allowed_format(name, self.only_binary, self.no_binary) != "source"

    def allows_source(self, name: NormalizedName) -> bool:
        return _allowed_format(name, self.only_binary, self.no_binary) != "binary"

    def allows_prereleases(self, name: NormalizedName) -> bool | None:
        if name in self.prerelease_names:
            return True
        if name in self.final_only_names:
            return False
        return True if self.pre else None


def _allowed_format(
    name: NormalizedName, only_binary: frozenset[str], no_binary: frozenset[str]
) -> str:
    """'binary', 'source' or 'both', with pip's precedence rules."""
    if name in only_binary:
        return "binary"
    if name in no_binary:
        return "source"
    if ":all:" in only_binary:
        return "binary"
    if ":all:" in no_binary:
        return "source"
    return "both"


@dataclass(frozen=True, slots=True)
class SafepipOption:
    """An option of safepip's own (pip does not know it): taken out before pip parses the rest."""

    name: str
    takes_value: bool
    help: str
    commands: frozenset[str] = frozenset()  # empty: every pipeline command


# Stage modules add their own options here; values end up in ``Settings.extra``.
SAFEPIP_OPTIONS: dict[str, SafepipOption] = {
    "--policy": SafepipOption("--policy", True, "a safepip policy file (TOML)"),
    "--sbom": SafepipOption("--sbom", True, "write a CycloneDX JSON SBOM of the plan to FILE"),
    "--require-attestations": SafepipOption(
        "--require-attestations",
        False,
        "refuse any file without valid PEP 740 provenance from its publisher",
    ),
    "--proceed-without-index": SafepipOption(
        "--proceed-without-index",
        True,
        "go on without this index (policy name or URL) if it cannot be reached; projects it "
        "owns may then come from another index",
    ),
    "--verify-files": SafepipOption(
        "--verify-files",
        False,
        "with --dry-run: download and verify every file and run the file gates, as an install "
        "would (a dry run otherwise resolves from metadata only, like pip's)",
    ),
    "--unsafe-unsandboxed-build": SafepipOption(
        "--unsafe-unsandboxed-build",
        False,
        "run sdist build code with no sandbox when none works here (it sees your files, "
        "secrets and network)",
    ),
}
# `safepip lock`: pip-compile's upgrade options and what pip's own `lock` parser lacks.
for _name, _takes_value, _help in (
    ("--format", True, "pylock or requirements (default: from the output file name)"),
    ("--upgrade", False, "ignore the pins of an existing output file"),
    ("-U", False, "same as --upgrade"),
    ("--upgrade-package", True, "upgrade this project; keep the other pins of the output"),
    ("-P", True, "same as --upgrade-package"),
    ("--python-version", True, "lock for this Python version instead of the target's"),
    ("--platform", True, "lock for this platform tag instead of the target's (repeatable)"),
    ("--environment", True, "lock also for PYTHON_VERSION[:PLATFORM,...] (repeatable)"),
    ("--extra", True, "include this optional-dependencies extra of pyproject.toml"),
    ("--build-constraints-output", True, "where to write the build dependencies' pins"),
    ("--pin-attestations", False, "record each project's PEP 740 publisher identity in the lock"),
    (
        "--accept-identity-change",
        False,
        "accept a changed publisher identity for the --upgrade-package projects",
    ),
):
    SAFEPIP_OPTIONS[_name] = SafepipOption(_name, _takes_value, _help, frozenset({"lock"}))


def extract_safepip_options(
    args: Sequence[str], command: str | None = None
) -> tuple[dict[str, list[str]], list[str]]:
    """Take safepip's own options (those of ``command``) out of ``args``; the rest is for pip."""
    found: dict[str, list[str]] = {}
    rest: list[str] = []
    it = iter(args)
    for arg in it:
        name, eq, value = arg.partition("=")
        option = SAFEPIP_OPTIONS.get(name)
        if option is None or (option.commands and command not in option.commands):
            rest.append(arg)
            continue
        if option.takes_value:
            if not eq:
                nxt = next(it, None)
                if nxt is None:
                    raise UsageError(f"{name} needs a value")
                value = nxt
            found.setdefault(name, []).append(value)
        else:
            if eq:
                raise UsageError(f"{name} takes no value")
            found.setdefault(name, []).append("")
    return found, rest


def split_command(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """Split ``argv`` into the subcommand and the rest, as pip does (general options may come
    before the subcommand)."""
    from pip._internal.cli.main_parser import create_main_parser

    parser = create_main_parser()
    try:
        _, rest = parser.parse_args(list(argv))
    except SystemExit as exc:
        raise UsageError(
            "invalid general option", hint="see `safepip --help`", reference="usage"
        ) from exc
    if not rest:
        return None, list(argv)
    command = rest[0]
    args = list(argv)
    args.remove(command)
    return command, args


def _pip_parse(
    command: str, args: Sequence[str]
) -> tuple[optparse.Values, list[str], optparse.Values]:
    """pip's options (configuration applied), positional arguments, and pip's bare defaults."""
    from safepip.pipparser import command_parser

    parser = command_parser(command, isolated=("--isolated" in args))
    parser.error = _raise_usage_error  # type: ignore[assignment]  # name the bad option
    # pip's options share their default lists between parsers, and callbacks append to them.
    parser.defaults = copy.deepcopy(parser.defaults)
    # Taken before parsing: optparse appends into a shared default list.
    defaults = copy.deepcopy(optparse.OptionParser.get_default_values(parser))
    options, positional = parser.parse_args(list(args))
    return options, positional, defaults


def _raise_usage_error(message: str) -> NoReturn:
    raise UsageError(message, hint="see `safepip options` and `pip install --help`")


def parse_pipeline_args(
    command: str, args: Sequence[str], environ: Mapping[str, str] | None = None
) -> Settings:
    """Parse a pipeline command exactly as pip would, configuration files and ``PIP_*`` included."""
    from safepip.indexpolicy import credentials_from_environment, name_sources, read_index_policy
    from safepip.policyfile import load_policy
    from safepip.reqs import read_requirements

    environ = os.environ if environ is None else environ
    command_line = tuple(args)
    extra, args = extract_safepip_options(args, command)
    policy_paths = extra.get("--policy") or []
    policy = load_policy(environ, policy_paths[-1] if policy_paths else None)
    try:
        options, positional, defaults = _pip_parse(command, args)
    except SafepipError:
        raise
    except SystemExit as exc:
        raise UsageError(
            f"invalid arguments for `{command}`", hint=f"see `safepip {command} --help`"
        ) from exc
    except Exception as exc:  # pip's own configuration errors
        raise ConfigError(f"cannot read pip's configuration: {exc}") from None

    refuse_given_options(command, options, defaults)
    if getattr(options, "use_user_site", False) and getattr(options, "target_dir", None):
        raise UsageError("cannot combine --user and --target")

    parsed = read_requirements(
        options,
        positional,
        project_inputs=command == "lock",
        project_extras=extra.get("--extra", ()),
    )
    sources, creds = _sources(parsed.index_urls, parsed.find_links)
    index_policy = read_index_policy(policy)
    sources = name_sources(sources, index_policy)
    creds.extend(credentials_from_environment(index_policy, environ))
    trusted_hosts = frozenset(
        {*(getattr(options, "trusted_hosts", None) or ()), *parsed.trusted_hosts}
    )
    http_hosts = check_insecure_sources(sources, trusted_hosts, policy)
    net = NetSettings(
        cert=options.cert or None,
        client_cert=options.client_cert or None,
        proxy=options.proxy or None,
        trust_env=not getattr(options, "no_proxy_env", False),
        retries=int(options.retries),
        timeout=float(options.timeout),
        keyring_provider=str(getattr(options, "keyring_provider", "auto")),
        credentials=tuple(creds),
    )
    release = parsed.release_control
    all_releases = set(getattr(release, "all_releases", set()) or ())
    only_final = set(getattr(release, "only_final", set()) or ())
    fmt = parsed.format_control
    only_binary = frozenset(getattr(fmt, "only_binary", ()) or ())
    no_binary = frozenset(getattr(fmt, "no_binary", ()) or ())
    cache_dir = options.cache_dir if options.cache_dir else None
    return Settings(
        command=command,
        requirements=parsed.requirements,
        constraints=parsed.constraints,
        build_constraints=tuple(getattr(options, "build_constraints", None) or ()),
        sources=sources,
        net=net,
        python=options.python or None,
        upgrade=bool(getattr(options, "upgrade", False)),
        upgrade_strategy=str(getattr(options, "upgrade_strategy", "only-if-needed")),
        force_reinstall=bool(getattr(options, "force_reinstall", False)),
        ignore_installed=bool(getattr(options, "ignore_installed", False)),
        no_deps=bool(getattr(options, "ignore_dependencies", False)),
        pre=bool(getattr(options, "pre", False)) or ":all:" in all_releases,
        prerelease_names=frozenset(
            canonicalize_name(n) for n in all_releases if n not in (":all:", ":none:")
        ),
        final_only_names=frozenset(
            canonicalize_name(n) for n in only_final if n not in (":all:", ":none:")
        ),
        only_binary=frozenset(canonicalize_name(n) if n != ":all:" else n for n in only_binary),
        no_binary=frozenset(canonicalize_name(n) if n != ":all:" else n for n in no_binary),
        prefer_binary=parsed.prefer_binary,
        require_hashes=bool(getattr(options, "require_hashes", False))
        or (parsed.any_hashes and not getattr(options, "no_require_hashes", False)),
        dry_run=bool(getattr(options, "dry_run", False)),
        report=getattr(options, "json_report_file", None),
        target_dir=getattr(options, "target_dir", None),
        user=bool(getattr(options, "use_user_site", False)),
        prefix=getattr(options, "prefix_path", None),
        root=getattr(options, "root_path", None),
        compile=bool(getattr(options, "compile", True)),
        no_warn_script_location=not getattr(options, "warn_script_location", True),
        no_warn_conflicts=not getattr(options, "warn_about_conflicts", True),
        root_user_action=getattr(options, "root_user_action", None),
        break_system_packages=bool(getattr(options, "override_externally_managed", False)),
        ignore_requires_python=bool(getattr(options, "ignore_requires_python", False)),
        verbosity=int(options.verbose) - int(options.quiet),
        cache_dir=Path(cache_dir) if cache_dir else None,
        uploaded_prior_to=getattr(options, "uploaded_prior_to", None),
        platforms=tuple(getattr(options, "platforms", None) or ()),
        python_version=_python_version(getattr(options, "python_version", None)),
        implementation=getattr(options, "implementation", None),
        abis=tuple(getattr(options, "abis", None) or ()),
        output_dir=getattr(options, "download_dir", None) or getattr(options, "wheel_dir", None),
        exists_action=tuple(getattr(options, "exists_action", None) or ()),
        progress_bar=str(getattr(options, "progress_bar", "on")),
        log=getattr(options, "log", None),
        no_color=bool(getattr(options, "no_color", False)),
        allowed_http_hosts=http_hosts,
        trusted_hosts=trusted_hosts,
        isolated=bool(getattr(options, "isolated_mode", False)),
        require_virtualenv=bool(getattr(options, "require_venv", False)),
        requested_order=tuple(r.name for r in parsed.requirements),
        locks=parsed.locks,
        lock_environments=parsed.lock_environments,
        output_file=getattr(options, "output_file", None),
        command_line=command_line,
        policy=policy,
        extra={k: tuple(v) for k, v in extra.items()},
        src_dir=_given_src(options, defaults),
    )


def _given_src(options: optparse.Values, defaults: optparse.Values) -> str | None:
    """``--src`` (or ``PIP_SRC``, or pip.conf's ``src``) if given: pip's default is computed for
    safepip's own environment, not the target's."""
    value = getattr(options, "src_dir", None)
    return str(value) if value and value != getattr(defaults, "src_dir", None) else None


def _python_version(value: Any) -> str | None:
    """pip stores --python-version as a tuple of ints."""
    if not value:
        return None
    if isinstance(value, tuple):
        return ".".join(str(v) for v in value)
    return str(value)


def _sources(
    index_urls: Sequence[str], find_links: Sequence[str]
) -> tuple[tuple[IndexSource, ...], list[tuple[str, str, str]]]:
    from pip._internal.models.index import PyPI

    creds: list[tuple[str, str, str]] = []
    sources: list[IndexSource] = []
    seen: set[tuple[str, str]] = set()
    for url, kind in [(u, "index") for u in index_urls] + [(u, "find-links") for u in find_links]:
        clean, cred = strip_credentials(url)
        if cred is not None:
            creds.append((clean, cred[0], cred[1]))
        if (clean, kind) in seen:
            continue
        seen.add((clean, kind))
        public = kind == "index" and clean.rstrip("/") == PyPI.simple_url.rstrip("/")
        sources.append(IndexSource(url=clean, kind=kind, public=public))
    return tuple(sources), creds
