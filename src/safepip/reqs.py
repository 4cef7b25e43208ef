"""Requirements from the command line and from requirement files, read with pip's own parser so
that every piece of pip's syntax means what it means to pip."""

from __future__ import annotations

import optparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from safepip.errors import RequirementsError, UsageError
from safepip.models import Hashes, UserRequirement

__all__ = ["ParsedInput", "parse_requirement_line", "read_requirements"]


@dataclass(frozen=True, slots=True)
class ParsedInput:
    requirements: tuple[UserRequirement, ...]
    constraints: tuple[UserRequirement, ...]
    index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    trusted_hosts: tuple[str, ...] = ()
    any_hashes: bool = False
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
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        if text.startswith((".", "/", "file:")) or "://" in text:
            raise UsageError(
                f"{text!r} ({comes_from}) is a local path or URL, which is not supported yet",
                hint="name the project and let safepip fetch it from an index",
                reference="unsupported-requirement",
            ) from None
        raise RequirementsError(f"invalid requirement {text!r} ({comes_from}): {exc}") from None
    if req.url is not None:
        raise UsageError(
            f"direct URL requirement {text!r} ({comes_from}) is not supported yet",
            hint="install the project from an index, or download and verify the file first",
            reference="unsupported-requirement",
        )
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


def _refuse_lock_file(filename: str) -> None:
    from pip._internal.utils.pylock import is_valid_pylock_filename

    if is_valid_pylock_filename(filename):
        raise UsageError(
            f"{filename} is a pylock.toml lock file, which safepip does not read yet",
            hint="install from a hashed requirements file instead",
            reference="unsupported-requirement",
        )


def _dependency_groups(groups: Sequence[tuple[str, str]]) -> list[UserRequirement]:
    """``--group [path:]name``: requirement strings from a pyproject.toml ``[dependency-groups]``."""
    from pip._internal.exceptions import InstallationError
    from pip._internal.req.req_dependency_group import parse_dependency_groups

    if not groups:
        return []
    for path, _ in groups:
        _refuse_lock_file(path)
    try:
        texts = parse_dependency_groups(list(groups))
    except InstallationError as exc:
        raise RequirementsError(str(exc).splitlines()[0]) from None
    where = ", ".join(f"--group {path}:{name}" for path, name in groups)
    return [parse_requirement_line(text, where) for text in texts]


def read_requirements(options: optparse.Values, positional: Sequence[str]) -> ParsedInput:
    """Read positional specifiers, ``-r`` and ``-c`` files into requirements and constraints."""
    from pip._internal.exceptions import InstallationError, RequirementsFileParseError
    from pip._internal.req.req_file import parse_requirements

    finder = _finder_from_options(options)
    session = _SessionShim()
    requirements: list[UserRequirement] = []
    constraints: list[UserRequirement] = []
    any_hashes = False
    for text in positional:
        requirements.append(parse_requirement_line(text, "command line"))
    requirements.extend(_dependency_groups(getattr(options, "dependency_groups", None) or []))
    sources = [(f, True) for f in (getattr(options, "constraints", None) or [])] + [
        (f, False) for f in (getattr(options, "requirements", None) or [])
    ]
    for filename, is_constraint in sources:
        _refuse_lock_file(filename)
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
        for item in parsed:
            if item.is_editable:
                raise UsageError(
                    f"editable requirement {item.requirement!r} ({item.comes_from}) "
                    "is not supported: an editable install runs the project's build backend",
                    hint="build a wheel of the project and install that",
                    reference="unsupported-requirement",
                )
            hashes = _hashes_of(item.options)
            any_hashes = any_hashes or bool(hashes)
            user_req = parse_requirement_line(item.requirement, item.comes_from, hashes)
            if item.constraint:
                constraints.append(
                    UserRequirement(
                        requirement=user_req.requirement,
                        comes_from=user_req.comes_from,
                        hashes=hashes,
                        constraint=True,
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
    )
