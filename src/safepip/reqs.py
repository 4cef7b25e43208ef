"""Requirements from the command line and from requirement files, read with pip's own parser so
that every piece of pip's syntax means what it means to pip."""

from __future__ import annotations

import optparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from safepip.errors import RequirementsError, UsageError
from safepip.lock import LockSource, is_pylock_path, requirements_environments
from safepip.models import Hashes, UserRequirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["ParsedInput", "parse_requirement_line", "project_requirements", "read_requirements"]


@dataclass(frozen=True, slots=True)
class ParsedInput:
    requirements: tuple[UserRequirement, ...]
    constraints: tuple[UserRequirement, ...]
    index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    trusted_hosts: tuple[str, ...] = ()
    any_hashes: bool = False
    locks: tuple[LockSource, ...] = ()
    lock_environments: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # The command line's selections, updated by options written inside requirement files.
    format_control: Any = None
    release_control: Any = None
    prefer_binary: bool = False


@dataclass
class _SearchScope:
    find_links: list[str]
    index_urls: list[str]
    no_index: bool = False


@dataclass
class _FinderShim:
    """Collects the index options written inside requirement files.

    pip's parser hands those to its PackageFinder; safepip only records them."""

    search_scope: _SearchScope = field(default_factory=lambda: _SearchScope([], []))
    format_control: Any = None
    release_control: Any = None
    prefer_binary: bool = False

    @property
    def find_links(self) -> list[str]:
        return self.search_scope.find_links

    @property
    def index_urls(self) -> list[str]:
        return self.search_scope.index_urls

    def set_release_control(self, value: Any) -> None:
        self.release_control = value

    def set_prefer_binary(self) -> None:
        self.prefer_binary = True


class _SessionShim:
    """Requirement files are read from disk or over ``file:``; remote ones are refused."""

    def get(self, url: str, *args: Any, **kwargs: Any) -> Any:
        raise RequirementsError(
            f"remote requirement files are not supported: {url}",
            hint="download the file and pass it by path",
        )

    def update_index_urls(self, urls: Sequence[str]) -> None:
        pass

    def add_trusted_host(self, host: str, source: str | None = None) -> None:
        self.trusted.append(host)

    def __init__(self) -> None:
        self.trusted: list[str] = []


def parse_requirement_line(
    text: str, comes_from: str, hashes: Hashes = Hashes()
) -> UserRequirement:
    from safepip.direct import looks_like_direct, parse_direct

    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        if looks_like_direct(text):
            return parse_direct(text, comes_from, hashes)
        first, *detail = str(exc).splitlines() or [""]
        raise RequirementsError(
            f"invalid requirement {text!r} ({comes_from}): {first}", context=tuple(detail)
        ) from None
    if req.url is not None:
        return parse_direct(text, comes_from, hashes)
    return UserRequirement(requirement=req, comes_from=comes_from, hashes=hashes)


def _hashes_of(options: dict[str, Any] | None) -> Hashes:
    """pip keeps ``--hash`` values as ``{algorithm: [digest, ...]}``."""
    raw = (options or {}).get("hashes") or {}
    return Hashes.from_pairs((algo, digest) for algo, digests in raw.items() for digest in digests)


def _finder_from_options(options: optparse.Values) -> _FinderShim:
    """The search scope and selections the command line and configuration give, as pip's finder
    starts with them: an ``--index-url`` inside a file replaces the index URLs, as in pip."""
    from pip._internal.models.index import PyPI

    no_index = bool(getattr(options, "no_index", False))
    index_urls: list[str] = []
    if not no_index:
        index_urls = [options.index_url or PyPI.simple_url, *(options.extra_index_urls or [])]
    return _FinderShim(
        search_scope=_SearchScope(
            find_links=list(getattr(options, "find_links", None) or []),
            index_urls=index_urls,
            no_index=no_index,
        ),
        format_control=getattr(options, "format_control", None),
        release_control=getattr(options, "release_control", None),
        prefer_binary=bool(getattr(options, "prefer_binary", False)),
    )


def project_requirements(path: str, extras: Sequence[str] = ()) -> list[UserRequirement]:
    """The static ``[project]`` dependencies of a pyproject.toml (and of the extras named)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise RequirementsError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RequirementsError(f"{path} is not valid TOML: {exc}") from None
    project = data.get("project")
    if not isinstance(project, dict):
        raise RequirementsError(f"{path} has no [project] table to take dependencies from")
    if "dependencies" in (project.get("dynamic") or []):
        raise UsageError(
            f"the dependencies of {path} are dynamic: only running its build backend would "
            "tell them, which safepip does not do outside its sandbox",
            hint="list them statically in [project] dependencies, or lock from a requirements file",
        )
    comes_from = f"{project.get('name') or 'project'} ({path})"
    texts = list(project.get("dependencies") or [])
    optional = project.get("optional-dependencies") or {}
    for extra in extras:
        if extra not in optional:
            raise RequirementsError(f"{path} has no optional-dependencies extra {extra!r}")
        texts.extend(optional[extra])
    if not all(isinstance(t, str) for t in texts):
        raise RequirementsError(f"{path}: dependencies must be strings")
    return [parse_requirement_line(t, comes_from) for t in texts]


def _group_requirements(groups: Sequence[tuple[str, str]]) -> list[UserRequirement]:
    """``--group [path:]NAME`` from pyproject.toml files, read by pip's own code."""
    from pip._internal.exceptions import InstallationError
    from pip._internal.req.req_dependency_group import parse_dependency_groups

    out: list[UserRequirement] = []
    for path, group in groups:
        try:
            texts = parse_dependency_groups([(path, group)])
        except InstallationError as exc:
            raise RequirementsError(str(exc)) from None
        out.extend(parse_requirement_line(t, f"{path} (group {group})") for t in texts)
    return out


def _split_locks(
    requirement_files: Sequence[str], groups: Sequence[tuple[str, str]]
) -> tuple[list[str], list[tuple[str, str]], tuple[LockSource, ...]]:
    """pylock.toml files (``-r pylock.toml[extra]``, ``--group pylock.toml:NAME``) apart from
    requirement files and pyproject.toml groups."""
    from pip._internal.utils.urls import strip_extras

    files: list[str] = []
    project_groups: list[tuple[str, str]] = []
    locks: dict[str, dict[str, Any]] = {}
    entries = [(f, None) for f in requirement_files] + [(p, g) for p, g in groups]
    for source, group in entries:
        filename, extras = strip_extras(source)
        if not is_pylock_path(os.path.basename(filename)):
            if group is None:
                files.append(source)
            else:
                project_groups.append((source, group))
            continue
        if "://" in filename:
            raise RequirementsError(
                f"remote lock files are not supported: {filename}",
                hint="download the file and pass it by path",
            )
        entry = locks.setdefault(filename, {"extras": set(), "groups": set(), "default": False})
        entry["extras"].update(extras)
        if group is None:
            entry["default"] = True
        else:
            entry["groups"].add(group)
    return (
        files,
        project_groups,
        tuple(
            LockSource(
                path=path,
                extras=frozenset(e["extras"]),
                groups=frozenset(e["groups"]),
                default_groups=bool(e["default"]),
            )
            for path, e in locks.items()
        ),
    )


def _split_project_files(
    positional: Sequence[str], files: Sequence[str]
) -> tuple[list[str], list[str], list[str]]:
    """pyproject.toml given as a positional argument or with -r (``safepip lock`` only)."""
    projects = [p for p in [*positional, *files] if os.path.basename(p) == "pyproject.toml"]
    return (
        [p for p in positional if p not in projects],
        [f for f in files if f not in projects],
        projects,
    )


def read_requirements(
    options: optparse.Values,
    positional: Sequence[str],
    *,
    project_inputs: bool = False,
    project_extras: Sequence[str] = (),
) -> ParsedInput:
    """Read positional specifiers, ``-r`` and ``-c`` files into requirements and constraints.

    With ``project_inputs`` (``lock``), a pyproject.toml path is read for its dependencies, and
    with no input at all the current directory's pyproject.toml is."""
    from pip._internal.exceptions import InstallationError, RequirementsFileParseError
    from pip._internal.req.req_file import parse_requirements

    from safepip.direct import parse_direct

    finder = _finder_from_options(options)
    session = _SessionShim()
    requirements: list[UserRequirement] = []
    constraints: list[UserRequirement] = []
    any_hashes = False
    requirement_files, project_groups, locks = _split_locks(
        getattr(options, "requirements", None) or [],
        getattr(options, "dependency_groups", None) or [],
    )
    projects: list[str] = []
    if project_inputs:
        positional, requirement_files, projects = _split_project_files(
            positional, requirement_files
        )
        nothing_given = not (positional or requirement_files or project_groups or locks)
        if nothing_given and not projects and os.path.isfile("pyproject.toml"):
            projects = ["pyproject.toml"]
    for text in getattr(options, "editables", None) or []:
        requirements.append(parse_direct(text, "command line", editable=True))
    for text in positional:
        requirements.append(parse_requirement_line(text, "command line"))
    for project in projects:
        requirements.extend(project_requirements(project, project_extras))
    requirements.extend(_group_requirements(project_groups))
    sources = [(f, True) for f in (getattr(options, "constraints", None) or [])] + [
        (f, False) for f in requirement_files
    ]
    for filename, is_constraint in sources:
        if is_constraint and is_pylock_path(os.path.basename(filename)):
            raise UsageError(
                f"{filename} is a pylock.toml lock file, which is not a constraints file",
                hint="install it with -r, or lock to a requirements file for use with -c",
                reference="unsupported-requirement",
            )
        try:
            parsed = list(
                parse_requirements(
                    filename,
                    session=session,
                    finder=finder,
                    options=options,
                    constraint=is_constraint,
                )
            )
        except (InstallationError, RequirementsFileParseError) as exc:
            raise RequirementsError(str(exc).splitlines()[0] if str(exc) else repr(exc)) from None
        except optparse.OptionError as exc:
            raise RequirementsError(f"{filename}: {exc}") from None
        except UnicodeDecodeError as exc:
            raise RequirementsError(
                f"{filename} is not text in a known encoding: {exc.reason} at byte {exc.start}",
                hint="save the file as UTF-8",
            ) from None
        for item in parsed:
            hashes = _hashes_of(item.options)
            any_hashes = any_hashes or bool(hashes)
            if item.is_editable:
                user_req = parse_direct(item.requirement, item.comes_from, hashes, editable=True)
            else:
                user_req = parse_requirement_line(item.requirement, item.comes_from, hashes)
            if item.constraint:
                constraints.append(
                    UserRequirement(
                        requirement=user_req.requirement,
                        comes_from=user_req.comes_from,
                        hashes=hashes,
                        constraint=True,
                        direct=user_req.direct,
                    )
                )
            else:
                requirements.append(user_req)
    scope = finder.search_scope
    return ParsedInput(
        requirements=tuple(requirements),
        constraints=tuple(constraints),
        index_urls=tuple(scope.index_urls),
        find_links=tuple(scope.find_links),
        no_index=scope.no_index,
        trusted_hosts=tuple(session.trusted),
        any_hashes=any_hashes,
        format_control=finder.format_control,
        release_control=finder.release_control,
        prefer_binary=finder.prefer_binary,
        locks=locks,
        lock_environments=tuple(
            (f, envs) for f in requirement_files if (envs := requirements_environments(f))
        ),
    )
