"""Direct references: requirements that name their source instead of an index — a local wheel,
archive or project directory, an editable directory, a URL, or a VCS URL — parsed with pip's own
rules, and their origin recorded afterwards (PEP 610 ``direct_url.json``) as pip records it."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from safepip.errors import HandoffError, PolicyRefusal, RequirementsError, UsageError
from safepip.models import (
    DirectReference,
    FileLink,
    Finding,
    Hashes,
    Pin,
    UserRequirement,
    VerifiedFile,
)
from safepip.net import redact_url, strip_credentials

if TYPE_CHECKING:
    from safepip.config import Settings
    from safepip.resolve import DirectCandidate, MetadataSource, SdistBuilder
    from safepip.target import Target

__all__ = [
    "TreeBuilder",
    "build_trees",
    "direct_url_json",
    "hash_mode_refusal",
    "looks_like_direct",
    "origin_records",
    "parse_direct",
    "prepare_direct",
    "record_origins",
    "source_dir",
    "static_project_name",
    "with_direct_names",
]

VCS_SCHEMES = ("git+",)
_OTHER_VCS = ("hg+", "svn+", "bzr+")
_SDIST_SUFFIXES = (".tar.gz", ".zip", ".tgz", ".tar.bz2", ".tar.xz", ".tar")


def looks_like_direct(text: str) -> bool:
    """A line pip would read as a path or URL rather than a name and specifier."""
    stripped = text.strip()
    try:
        Requirement(stripped)
    except InvalidRequirement:
        pass
    else:
        return False
    if stripped.startswith((".", "/", "~", "file:")) or "://" in stripped.split(";", 1)[0]:
        return True
    return stripped.endswith((".whl", *_SDIST_SUFFIXES)) and "@" not in stripped


def _kind_of(url: str) -> Literal["wheel", "archive", "directory", "vcs"]:
    if url.startswith(VCS_SCHEMES):
        return "vcs"
    path = urllib.parse.urlsplit(url).path
    if path.endswith(".whl"):
        return "wheel"
    if url.startswith("file:") and Path(urllib.request.url2pathname(path)).is_dir():
        return "directory"
    return "archive"


def _pip_link(text: str, editable: bool, comes_from: str) -> tuple[object, str | None]:
    """pip's own reading of a requirement line: its link and the name it gives (if any)."""
    import logging

    from pip._internal.exceptions import InstallationError
    from pip._internal.req.constructors import install_req_from_editable, install_req_from_line

    logging.getLogger("pip._internal").setLevel(logging.ERROR)  # we say what is wrong ourselves
    try:
        ireq = install_req_from_editable(text) if editable else install_req_from_line(text)
    except InstallationError as exc:
        unnamed = "detect requirement name" in str(exc)
        raise RequirementsError(
            f"{text!r} ({comes_from}): {str(exc).splitlines()[0]}",
            hint="name it, as `-e NAME @ URL`" if unnamed else "give an existing path, or a URL",
            reference="unnamed-requirement" if unnamed else "invalid-requirement",
        ) from None
    return ireq, ireq.name


def static_project_name(directory: Path) -> str | None:
    """The project name a source tree declares without running code: ``[project] name`` in
    pyproject.toml, or ``[metadata] name`` in setup.cfg."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    pyproject = directory / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            data = {}
        project = data.get("project")
        if isinstance(project, dict) and isinstance(project.get("name"), str):
            return str(project["name"])
    setup_cfg = directory / "setup.cfg"
    if setup_cfg.is_file():
        import configparser

        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(setup_cfg, encoding="utf-8")
            name = parser.get("metadata", "name", fallback=None)
        except (configparser.Error, UnicodeDecodeError):
            name = None
        if name and re.fullmatch(r"[A-Za-z0-9._-]+", name.strip()):
            return name.strip()
    return None


def _name_from_url(url: str, kind: str, egg: str | None) -> str | None:
    """The name a URL gives by itself: its ``#egg=`` or, for a wheel, its file name."""
    if egg:
        return egg
    filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    if kind == "wheel":
        try:
            return parse_wheel_filename(filename)[0]
        except InvalidWheelFilename:
            return None
    return None


_VALID_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")


def _guessed_name(url: str, kind: str) -> str:
    """A stand-in name for an unnamed source, until its metadata gives the real one: an sdist's
    file name, a directory's static ``[project] name`` or its own name, a repository's name."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path).rstrip("/")
    last = path.rsplit("/", 1)[-1]
    if kind == "archive":
        try:
            return parse_sdist_filename(last)[0]
        except InvalidSdistFilename:
            return "unnamed"  # e.g. a forge's archive of a tag: .../archive/v1.0.tar.gz
    if kind == "directory":
        guess = static_project_name(Path(urllib.request.url2pathname(path))) or last
    else:
        guess = last.partition("@")[0].removesuffix(".git")
    return guess if _VALID_NAME.fullmatch(guess) else "unnamed"


def parse_direct(
    text: str, comes_from: str, hashes: Hashes = Hashes(), *, editable: bool = False
) -> UserRequirement:
    """A direct reference as pip reads it: ``name @ url``, a bare path or URL, or ``-e path``."""
    try:
        named: Requirement | None = Requirement(text)
    except InvalidRequirement:
        named = None
    if named is not None and named.url is None and not editable:
        raise RequirementsError(f"{text!r} ({comes_from}) is not a direct reference")
    ireq, pip_name = _pip_link(text, editable, comes_from)
    link = ireq.link  # type: ignore[attr-defined]
    if link is None:
        raise RequirementsError(f"{text!r} ({comes_from}) names no source")
    raw_url = str(link.url)
    if raw_url.startswith(_OTHER_VCS):
        raise UsageError(
            f"{redact_url(raw_url)} ({comes_from}): only git is supported for VCS requirements",
            hint="use a git URL, or a wheel or source archive of the project",
            reference="unsupported-requirement",
        )
    url, _creds = strip_credentials(raw_url)
    base, _, fragment = url.partition("#")
    params = urllib.parse.parse_qs(fragment)
    subdirectory = params["subdirectory"][0] if params.get("subdirectory") else None
    egg = params["egg"][0] if params.get("egg") else None
    kind = _kind_of(base)
    if base.startswith("file:") and kind != "vcs":
        local = Path(urllib.request.url2pathname(urllib.parse.urlsplit(base).path))
        if not local.exists():
            raise RequirementsError(
                f"{text!r} ({comes_from}): {local} does not exist",
                hint="check the path (relative paths are taken from the current directory)",
            )
    if editable and kind not in ("directory", "vcs"):
        raise UsageError(
            f"{text!r} ({comes_from}): only a project directory or a VCS URL can be editable",
            reference="unsupported-requirement",
        )
    name = (
        (named.name if named is not None else None) or pip_name or _name_from_url(base, kind, egg)
    )
    is_named = name is not None
    if name is None and editable and kind == "vcs":
        raise UsageError(
            f"cannot tell which project {redact_url(text)!r} ({comes_from}) is: an editable "
            "VCS requirement needs its name, as pip says too",
            hint="name it, as `-e NAME @ git+URL`",
            reference="unnamed-requirement",
        )
    name = name or _guessed_name(base, kind)
    extras = sorted(named.extras) if named is not None else sorted(getattr(ireq, "extras", ()))
    marker = f" ; {named.marker}" if named is not None and named.marker is not None else ""
    extra_text = f"[{','.join(extras)}]" if extras else ""
    requirement = Requirement(f"{canonicalize_name(name)}{extra_text} @ {base}{marker}")
    fragment_hashes = Hashes.from_pairs(
        (algo, digest[0])
        for algo, digest in params.items()
        if algo in ("sha256", "sha384", "sha512")
    )
    reference = DirectReference(
        url=base,
        kind=kind,
        editable=editable,
        subdirectory=subdirectory,
        credentials_url=raw_url.partition("#")[0] if _creds else None,
        named=is_named,
    )
    return UserRequirement(
        requirement=requirement,
        comes_from=comes_from,
        hashes=hashes | fragment_hashes,
        direct=reference,
    )


def direct_url_json(
    reference: DirectReference, *, sha256: str | None, commit_id: str | None
) -> dict[str, object]:
    """The PEP 610 record pip writes for a direct reference (credentials never included)."""
    if reference.kind == "vcs":
        url, _, revision = reference.url.removeprefix("git+").rpartition("@")
        if not url or "/" in revision:
            url, revision = reference.url.removeprefix("git+"), ""
        vcs_info: dict[str, object] = {"vcs": "git", "commit_id": commit_id or ""}
        if revision:
            vcs_info["requested_revision"] = revision
        record: dict[str, object] = {"url": url, "vcs_info": vcs_info}
    elif reference.kind == "directory":
        record = {
            "url": reference.url,
            "dir_info": {"editable": True} if reference.editable else {},
        }
    else:
        archive: dict[str, object] = {}
        if sha256:
            archive = {"hash": f"sha256={sha256}", "hashes": {"sha256": sha256}}
        record = {"url": reference.url, "archive_info": archive}
    if reference.subdirectory:
        record["subdirectory"] = reference.subdirectory
    return record


_WRITER = r"""
import base64, hashlib, importlib.metadata as md, json, os, sys
spec = json.loads(sys.stdin.read())
paths = spec["paths"] or None
def write(info, filename, data):
    with open(os.path.join(info, filename), "wb") as f:
        f.write(data)
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record_path = os.path.join(info, "RECORD")
    rel = os.path.basename(info) + "/" + filename
    with open(record_path, encoding="utf-8") as f:
        rows = [r for r in f.read().splitlines() if r and not r.startswith(rel + ",")]
    rows.append(f"{rel},sha256={digest},{len(data)}")
    with open(record_path, "w", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
for name, record in spec["records"].items():
    dists = list(md.distributions(name=name, path=paths) if paths else md.distributions(name=name))
    if not dists:
        print("not-found:" + name)
        sys.exit(3)
    info = dists[0]._path
    write(info, "direct_url.json", (json.dumps(record, sort_keys=True) + "\n").encode())
    if name in spec["states"]:
        write(info, spec["state_file"], spec["states"][name].encode())
"""


def _search_paths(
    python: str, *, target_dir: str | None, user: bool, prefix: str | None, root: str | None
) -> list[str]:
    if target_dir:
        return [str(Path(target_dir).resolve())]
    if not (user or prefix or root):
        return []
    code = (
        "import json, site, sysconfig, sys, os\n"
        f"user, prefix, root = {user!r}, {prefix!r}, {root!r}\n"
        "if user:\n"
        "    paths = [site.getusersitepackages()]\n"
        "else:\n"
        "    base = prefix or sys.prefix\n"
        "    p = sysconfig.get_paths(vars={'base': base, 'platbase': base})\n"
        "    paths = [p['purelib'], p['platlib']]\n"
        "if root:\n"
        "    paths = [os.path.join(root, q.lstrip(os.sep)) for q in paths]\n"
        "print(json.dumps(paths))\n"
    )
    out = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise HandoffError("cannot locate where pip installed the direct references")
    return list(json.loads(out.stdout))


def record_origins(
    python: str,
    records: Mapping[NormalizedName, Mapping[str, object]],
    *,
    target_dir: str | None = None,
    user: bool = False,
    prefix: str | None = None,
    root: str | None = None,
) -> None:
    """Write each direct reference's ``direct_url.json`` (and its RECORD row) after pip ran, so
    that ``pip freeze`` and ``pip inspect`` show the real origin, as after a plain pip install."""
    if not records:
        return
    paths = _search_paths(python, target_dir=target_dir, user=user, prefix=prefix, root=root)
    from safepip.editstate import STATE_FILE, editable_states

    spec = json.dumps(
        {
            "paths": paths,
            "records": {k: dict(v) for k, v in records.items()},
            "states": editable_states(records),
            "state_file": STATE_FILE,
        }
    )
    out = subprocess.run(
        [python, "-I", "-c", _WRITER], input=spec, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        missing = out.stdout.strip().removeprefix("not-found:") or "?"
        raise HandoffError(
            f"pip installed the files, but the origin of {missing} could not be recorded",
            hint="run `safepip install` again; `pip freeze` may show it without its URL meanwhile",
        )


def describe(reference: DirectReference) -> str:
    return redact_url(reference.url) + (" (editable)" if reference.editable else "")


class TreeBuilder(Protocol):
    """Builds a source tree (a project directory or a VCS checkout): the sandbox provides one."""

    def prepare_tree_metadata(self, tree: Path, name: str, *, editable: bool) -> bytes: ...

    def build_tree(self, tree: Path, pin: Pin, *, editable: bool) -> Path: ...


def _file_link(reference: DirectReference, hashes: Hashes) -> FileLink:
    """The file a wheel or archive reference names; when its hashes admit one file only, every
    download of it (the sandboxed build's too) checks them, before any of its code runs."""
    fetch_url = reference.credentials_url or reference.url
    filename = urllib.parse.unquote(urllib.parse.urlsplit(reference.url).path.rsplit("/", 1)[-1])
    one_each = all(len(hashes.allowed(a)) == 1 for a in hashes.algorithms)
    return FileLink(
        filename=filename,
        url=fetch_url,
        index_url=reference.url,
        hashes=hashes if one_each else Hashes(),
    )


def source_dir(settings: Settings, target: Target) -> Path | None:
    """Where an editable git requirement is checked out, as pip places it: ``--src``, else
    ``src`` in the target's virtual environment, else ``./src``; ``None`` when nothing is
    installed (the checkout then goes to a temporary directory)."""
    if settings.command != "install" or settings.dry_run:
        return None
    if settings.src_dir:
        return Path(settings.src_dir).absolute()
    return Path(target.prefix if target.is_virtualenv else Path.cwd(), "src").absolute()


def _tree_of(
    reference: DirectReference,
    workdir: Path,
    name: str,
    src: Path | None = None,
    fresh: list[Path] | None = None,
) -> tuple[Path, DirectReference, list[Finding]]:
    """The source tree a directory or VCS reference names (VCS: a clean checkout; editable:
    checked out under ``src`` and then, as pip records it, an editable directory)."""
    findings: list[Finding] = []
    if reference.kind == "directory":
        root = Path(urllib.request.url2pathname(urllib.parse.urlsplit(reference.url).path))
    else:
        from safepip.vcs import checkout, checkout_in_place

        url = reference.credentials_url or reference.url
        if reference.editable and src is not None:
            destination = src / canonicalize_name(name)
            if fresh is not None and not destination.exists():
                fresh.append(destination)
            done = checkout_in_place(url, destination)
        else:
            done = checkout(url, workdir / f"vcs-{name}")
        root = done.tree
        reference = dataclasses.replace(reference, commit_id=done.commit_id)
        if done.moving:
            what = f"ref {done.requested_revision!r}" if done.requested_revision else "no ref"
            findings.append(
                Finding(
                    gate="direct",
                    project=canonicalize_name(name),
                    message=f"{redact_url(reference.url)} names {what}, which can move; "
                    f"installed commit {done.commit_id}",
                    action="warn",
                    rule="vcs-moving-ref",
                    hint="pin the full commit id after @ for a repeatable install",
                    details=(("commit-id", done.commit_id),),
                )
            )
        if reference.editable and src is not None:
            tree = root / reference.subdirectory if reference.subdirectory else root
            reference = DirectReference(
                url=tree.absolute().as_uri(),
                kind="directory",
                editable=True,
                commit_id=done.commit_id,
            )
            return tree, reference, findings
    tree = root / reference.subdirectory if reference.subdirectory else root
    if not tree.resolve().is_relative_to(root.resolve()) or not tree.is_dir():
        raise UsageError(
            f"{redact_url(reference.url)}: subdirectory {reference.subdirectory!r} is not a "
            "directory inside the project",
            reference="invalid-requirement",
        )
    return tree, reference, findings


def prepare_direct(
    requirements: Sequence[UserRequirement],
    metadata: MetadataSource,
    builder: SdistBuilder,
    trees: TreeBuilder,
    workdir: Path,
    src: Path | None = None,
) -> tuple[list[DirectCandidate], list[Finding]]:
    """Read or prepare the core metadata of every direct reference, before resolution, so the
    resolver can pin each to its one source. An editable clone made here under ``src`` is
    removed again if this fails."""
    fresh: list[Path] = []
    try:
        return _prepare_each(requirements, metadata, builder, trees, workdir, src, fresh)
    except BaseException:
        for path in fresh:
            shutil.rmtree(path, ignore_errors=True)
        raise


def _prepare_each(
    requirements: Sequence[UserRequirement],
    metadata: MetadataSource,
    builder: SdistBuilder,
    trees: TreeBuilder,
    workdir: Path,
    src: Path | None,
    fresh: list[Path],
) -> tuple[list[DirectCandidate], list[Finding]]:
    from safepip.resolve import DirectCandidate as Candidate
    from safepip.resolve import parse_metadata

    out: list[DirectCandidate] = []
    findings: list[Finding] = []
    seen: dict[NormalizedName, DirectReference] = {}
    for req in requirements:
        reference = req.direct
        if reference is None:
            continue
        if not reference.named and req.constraint:
            raise UsageError(
                f"{describe(reference)} ({req.comes_from}): unnamed requirements are not allowed "
                "as constraints, as in pip",
                hint="name it, as `NAME @ URL`",
                reference="unnamed-requirement",
            )
        if reference.named and _seen_before(seen, req.name, reference):
            continue
        if reference.kind in ("wheel", "archive"):
            link = _file_link(reference, req.hashes)
            raw = (
                metadata.metadata(link)
                if reference.kind == "wheel"
                else builder.prepare_metadata(link)
            )
        else:
            tree, reference, more = _tree_of(reference, workdir, req.name, src, fresh)
            findings += more
            raw = trees.prepare_tree_metadata(tree, req.name, editable=reference.editable)
            link = FileLink(filename=req.name, url=tree.as_uri(), index_url=reference.url)
        meta = parse_metadata(raw, describe(reference))
        if reference.named and meta.name != req.name:
            raise PolicyRefusal(
                f"{describe(reference)} is {meta.name} {meta.version}, not {req.name}",
                hint="correct the name before @, or the path or URL",
                reference="metadata-mismatch",
            )
        if not reference.named and _seen_before(seen, meta.name, reference):
            continue
        if reference.kind in ("directory", "vcs"):
            link = dataclasses.replace(link, filename=f"{meta.name}-{meta.version}")
        out.append(Candidate(meta.name, meta.version, link, raw, reference))
    return out, findings


def _source_key(reference: DirectReference) -> tuple[str, bool, str | None]:
    return reference.url, reference.editable, reference.subdirectory


def _seen_before(
    seen: dict[NormalizedName, DirectReference], name: NormalizedName, reference: DirectReference
) -> bool:
    """Whether ``name`` was already prepared from this source; two sources for one name are
    refused, as pip refuses them."""
    before = seen.setdefault(name, reference)
    if before is reference:
        return False
    if _source_key(before) != _source_key(reference):
        raise UsageError(
            f"{name} is named with two different sources: "
            f"{describe(before)} and {describe(reference)}",
            hint="name each project once",
            reference="double-requirement",
        )
    return True


def with_direct_names(settings: Settings, direct: Sequence[DirectCandidate]) -> Settings:
    """``settings`` with every unnamed direct reference (``git+URL``, a path) named by the
    project's own metadata, as pip names it, so it resolves as ``NAME @ URL``."""
    names = {_source_key(d.reference): d.name for d in direct}

    def named(req: UserRequirement) -> UserRequirement:
        if req.direct is None or req.direct.named:
            return req
        old = req.requirement
        text = str(old).replace(old.name, names[_source_key(req.direct)], 1)
        return dataclasses.replace(req, requirement=Requirement(text))

    if all(r.direct is None or r.direct.named for r in settings.requirements):
        return settings
    return dataclasses.replace(settings, requirements=tuple(map(named, settings.requirements)))


def build_trees(pins: Sequence[Pin], trees: TreeBuilder, store_dir: Path) -> list[VerifiedFile]:
    """Build the wheel of every pin that is a source tree; the wheels then pass the same
    checks as any downloaded wheel."""
    from safepip.fetch import hash_file

    built = []
    for pin in pins:
        assert pin.direct is not None and isinstance(pin.source, FileLink)
        tree = Path(urllib.request.url2pathname(urllib.parse.urlsplit(pin.source.url).path))
        wheel = trees.build_tree(tree, pin, editable=pin.direct.editable)
        dest = store_dir / wheel.name
        shutil.copyfile(wheel, dest)
        link = dataclasses.replace(pin.source, filename=wheel.name, url=dest.as_uri())
        built.append(
            VerifiedFile(
                pin=dataclasses.replace(pin, source=link),
                path=dest,
                sha256=hash_file(dest)["sha256"],
            )
        )
    return built


def is_tree(pin: Pin) -> bool:
    return pin.direct is not None and pin.direct.kind in ("directory", "vcs")


def origin_records(
    files: Sequence[VerifiedFile], fetched_sha256: Mapping[str, str]
) -> dict[NormalizedName, dict[str, object]]:
    """The ``direct_url.json`` of every installed file that came from a direct reference (for
    an archive, the hash of the file fetched, not of the wheel built from it)."""
    return {
        vf.pin.name: direct_url_json(
            vf.pin.direct,
            sha256=fetched_sha256.get(vf.pin.name, vf.sha256)
            if vf.pin.direct.kind in ("wheel", "archive")
            else None,
            commit_id=vf.pin.direct.commit_id,
        )
        for vf in files
        if vf.pin.direct is not None
    }


def hash_mode_refusal(req: UserRequirement) -> PolicyRefusal | None:
    """Why a direct reference cannot be installed in hash-checking mode, if it cannot: a file
    needs a hash, a git URL a full commit id (checked after checkout), and a directory is never
    hash-verifiable (as pip says too)."""
    reference = req.direct
    assert reference is not None
    shown = f"{describe(reference)} ({req.comes_from})"
    if reference.editable:
        return PolicyRefusal(
            f"{shown} is editable, and hash-checking mode cannot verify an editable install "
            "(no single file to hash), as pip says too",
            hint="install it without -e, or outside hash-checking mode",
            reference="hash-unpinned",
        )
    if reference.kind in ("wheel", "archive") and not req.hashes:
        return PolicyRefusal(
            f"{shown} has no hash, as hash-checking mode requires",
            hint="add --hash=sha256:... to it (`safepip lock` writes them)",
            reference="hash-missing",
        )
    if reference.kind == "vcs":
        from safepip.vcs import is_commit_id, split_vcs_url

        _, ref = split_vcs_url(reference.url)
        if ref is None or not is_commit_id(ref):
            return PolicyRefusal(
                f"{shown} names a ref that can move, and hash-checking mode needs a fixed source",
                hint="pin the full commit id after @ in the URL",
                reference="hash-unpinned",
            )
    if reference.kind == "directory":
        return PolicyRefusal(
            f"{shown} is a directory, which cannot be verified against a hash",
            hint="build a wheel of it and pin that wheel's hash",
            reference="hash-unpinned",
        )
    return None
