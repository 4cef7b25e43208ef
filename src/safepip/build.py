"""The build frontend: sdists unpacked strictly, build requirements resolved to hash-checked wheels
in a read-only throwaway environment, PEP 517 hooks run only inside the sandbox, built wheels
checked against the sdist."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from safepip import sandbox
from safepip.buildconstraints import BuildConstraints, check_build_pins
from safepip.errors import PolicyRefusal, SafepipError
from safepip.fetch import download_all, hash_file
from safepip.models import FileLink, Finding, Hashes, Pin, UserRequirement, VerifiedFile
from safepip.sdist import ArchiveCaps, unpack_sdist

if TYPE_CHECKING:
    import requests

    from safepip.config import Settings
    from safepip.fetch import FileStore
    from safepip.policyfile import Policy
    from safepip.report import Reporter
    from safepip.resolve import LinkSource, MetadataSource, ResolveOptions
    from safepip.target import Target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "BuildContext",
    "BuildFailed",
    "BuildPolicy",
    "BuildSystem",
    "SandboxedBuilder",
    "backend_override",
    "build_policy",
    "read_build_system",
]

DRIVER = Path(__file__).resolve().parent / "_build_driver.py"
DEFAULT_BACKEND = "setuptools.build_meta:__legacy__"
DEFAULT_REQUIRES = ("setuptools>=40.8.0",)
UNSAFE_FLAG = "--unsafe-unsandboxed-build"
# Build variables that pass into the sandbox when set (the policy's `pass-env` adds more).
BUILD_VARIABLES = (
    "AR",
    "ARFLAGS",
    "CC",
    "CFLAGS",
    "CMAKE_ARGS",
    "CMAKE_BUILD_PARALLEL_LEVEL",
    "CPPFLAGS",
    "CUDA_HOME",
    "CUDA_PATH",
    "CXX",
    "CXXFLAGS",
    "LDFLAGS",
    "LDSHARED",
    "MAKEFLAGS",
    "MAX_JOBS",
    "PKG_CONFIG_PATH",
    "RUSTFLAGS",
    "SOURCE_DATE_EPOCH",
)
_NETWORK_SIGNS = (
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Could not resolve host",
    "failed to download",
    "failed to get",
    "urlopen error",
    "ConnectionError",
    "socket.gaierror",
    "PermissionError: [Errno 13] Permission denied",
)


class BuildFailed(SafepipError):
    """A build hook failed, timed out or produced something unacceptable."""

    reference = "build-failed"


@dataclass(frozen=True, slots=True)
class BuildSystem:
    """The ``[build-system]`` table of an sdist, with PEP 517's defaults filled in."""

    requires: tuple[str, ...]
    backend: str
    backend_path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BuildPolicy:
    """What the user's trusted policy, flags and environment say about builds."""

    only: tuple[str, ...] = ()  # backends allowed, in preference order (empty: all)
    unsandboxed: bool = False  # the loudly warned opt-out
    limits: sandbox.Limits = sandbox.Limits()
    timeouts: Mapping[NormalizedName, float] = field(default_factory=dict)
    pass_env: tuple[str, ...] = ()
    caps: ArchiveCaps = ArchiveCaps()
    network: frozenset[NormalizedName] = frozenset()  # projects allowed the network to build

    def limits_for(self, name: NormalizedName) -> sandbox.Limits:
        timeout = self.timeouts.get(name)
        if timeout is None:
            return self.limits
        return dataclasses.replace(self.limits, timeout=timeout)


def _positive(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        from safepip.errors import ConfigError

        raise ConfigError(f"policy key [sandbox] {key} must be a positive number")
    return float(value)


def backend_override(policy: Policy, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The backends allowed: ``SAFEPIP_SANDBOX_BACKEND`` or the trusted policy's
    ``[sandbox] backend`` (a name or a list), in order; empty means every backend."""
    value = environ.get("SAFEPIP_SANDBOX_BACKEND") or policy.section("sandbox").get("backend") or ()
    names = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return tuple(n.strip() for n in names if n.strip())


def build_policy(settings: Settings, environ: Mapping[str, str]) -> BuildPolicy:
    """The build policy from ``[sandbox]`` of the trusted policy (a project's own files may only
    shorten timeouts), ``--unsafe-unsandboxed-build`` and ``SAFEPIP_SANDBOX_BACKEND``."""
    section = settings.policy.section("sandbox")
    project = settings.policy.project_section("sandbox")
    only = backend_override(settings.policy, environ)
    limits = sandbox.Limits()
    timeout = _positive(section.get("timeout", limits.timeout), "timeout")
    if "timeout" in project:
        timeout = min(timeout, _positive(project["timeout"], "timeout"))
    if "memory" in section:
        limits = dataclasses.replace(
            limits, memory_bytes=int(_positive(section["memory"], "memory"))
        )
    limits = dataclasses.replace(limits, timeout=timeout)
    timeouts: dict[NormalizedName, float] = {}
    network: set[NormalizedName] = set()
    projects = section.get("projects", {})
    if isinstance(projects, Mapping):
        for name, table in projects.items():
            if isinstance(table, Mapping) and table.get("network") is True:
                network.add(canonicalize_name(str(name)))
            if isinstance(table, Mapping) and "timeout" in table:
                timeouts[canonicalize_name(str(name))] = _positive(
                    table["timeout"], f"projects.{name}.timeout"
                )
    pass_env = section.get("pass-env", ())
    unsafe = UNSAFE_FLAG in settings.extra or section.get("allow-unsandboxed") is True
    return BuildPolicy(
        only=only,
        unsandboxed=unsafe,
        limits=limits,
        timeouts=timeouts,
        pass_env=tuple(str(v) for v in pass_env) if isinstance(pass_env, (list, tuple)) else (),
        network=frozenset(network),
    )


def read_build_system(source: Path, where: str) -> BuildSystem:
    """PEP 517/518: ``[build-system]`` of ``pyproject.toml``, or setuptools' legacy defaults."""
    pyproject = source / "pyproject.toml"
    if not pyproject.is_file():
        return BuildSystem(requires=DEFAULT_REQUIRES, backend=DEFAULT_BACKEND)
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BuildFailed(f"{where}: pyproject.toml is not valid TOML: {exc}") from None
    table = data.get("build-system")
    if table is None:
        return BuildSystem(requires=DEFAULT_REQUIRES, backend=DEFAULT_BACKEND)
    requires = table.get("requires") if isinstance(table, dict) else None
    backend = table.get("build-backend", DEFAULT_BACKEND) if isinstance(table, dict) else None
    backend_path = table.get("backend-path", []) if isinstance(table, dict) else None
    if (
        not isinstance(requires, list)
        or not all(isinstance(r, str) for r in requires)
        or not isinstance(backend, str)
        or not isinstance(backend_path, list)
        or not all(isinstance(p, str) for p in backend_path)
    ):
        raise BuildFailed(f"{where}: pyproject.toml has a malformed [build-system] table")
    for entry in backend_path:
        resolved = (source / entry).resolve()
        if resolved != source.resolve() and source.resolve() not in resolved.parents:
            raise PolicyRefusal(
                f"{where}: backend-path {entry!r} points outside the source tree",
                reference="build-backend-path",
            )
    return BuildSystem(requires=tuple(requires), backend=backend, backend_path=tuple(backend_path))


@dataclass(frozen=True, slots=True)
class BuildContext:
    """The pipeline pieces a build needs: indexes, metadata, downloads, the target."""

    settings: Settings
    target: Target
    links: LinkSource
    metadata: MetadataSource
    session: requests.Session
    store: FileStore
    options: ResolveOptions
    reporter: Reporter
    environ: Mapping[str, str]
    cache_dir: Path | None
    build_constraints: BuildConstraints = BuildConstraints()


@dataclass
class _Prepared:
    """An sdist unpacked, its build environment ready, its metadata known."""

    link: FileLink
    name: NormalizedName
    root: Path
    source: Path
    system: BuildSystem
    env: Path
    metadata: bytes = b""
    wheel: Path | None = None


class SandboxedBuilder:
    """``resolve.SdistBuilder``: metadata during resolution and wheels before install, every
    build hook inside the sandbox."""

    def __init__(self, ctx: BuildContext, policy: BuildPolicy | None = None) -> None:
        self.ctx = ctx
        self.policy = policy or build_policy(ctx.settings, ctx.environ)
        self.findings: list[Finding] = []
        self._prepared: dict[str, _Prepared] = {}
        self._backend: sandbox.Backend | None = None
        self._work_dir: Path | None = None
        self._envs: dict[str, Path] = {}

    # resolve.SdistBuilder

    def prepare_metadata(self, link: FileLink) -> bytes:
        prepared = self._prepare(link)
        if not prepared.metadata:
            prepared.metadata = self._metadata(prepared)
        return prepared.metadata

    # pipeline

    def wheels_for(self, files: Sequence[VerifiedFile]) -> list[VerifiedFile]:
        """For commands that install or collect wheels, every sdist among ``files`` replaced by
        the wheel built from it, checked; ``download`` and ``--dry-run`` keep the files as they are."""
        settings = self.ctx.settings
        if settings.command not in ("install", "wheel") or settings.dry_run:
            return list(files)
        return [self._build(vf) if self._is_sdist(vf) else vf for vf in files]

    def close(self) -> None:
        if self._work_dir is not None:
            sandbox.remove_tree(self._work_dir)

    # direct.TreeBuilder: a project directory or VCS checkout, built where it is

    def prepare_tree_metadata(self, tree: Path, name: str, *, editable: bool) -> bytes:
        prepared = self._prepare_tree(tree, canonicalize_name(name), editable)
        if not prepared.metadata:
            kind = "editable" if editable else "wheel"
            out = self._fresh(prepared.root / "out")
            result = self._hook(prepared, f"prepare_metadata_for_build_{kind}", [str(out)])
            if result is None:
                prepared.wheel = self._tree_wheel(prepared, editable)
                with zipfile.ZipFile(prepared.wheel) as zf:
                    from safepip.fetch import read_wheel_metadata

                    prepared.metadata = read_wheel_metadata(zf, prepared.wheel.name)
            else:
                prepared.metadata = self._metadata_file(prepared, out, str(result))
        return prepared.metadata

    def build_tree(self, tree: Path, pin: Pin, *, editable: bool) -> Path:
        prepared = self._prepare_tree(tree, pin.name, editable)
        wheel = prepared.wheel or self._tree_wheel(prepared, editable)
        self._check_wheel_name(pin, wheel)
        return wheel

    def _prepare_tree(self, tree: Path, name: NormalizedName, editable: bool) -> _Prepared:
        key = f"{tree.resolve().as_uri()}#editable={editable}"
        found = self._prepared.get(key)
        if found is not None:
            return found
        kind = "editable" if editable else "wheel"
        link = FileLink(filename=tree.name or str(tree), url=tree.resolve().as_uri(), index_url="")
        system = read_build_system(tree, str(tree))
        self._scan(name, link, tree, system)
        backend = self._sandbox()
        root = Path(tempfile.mkdtemp(prefix="tree-", dir=self._work))
        for sub in ("home", "tmp", "out"):
            (root / sub).mkdir()
        env = self._environment(system.requires, str(tree))
        prepared = _Prepared(
            link=link, name=name, root=root, source=tree.resolve(), system=system, env=env
        )
        self._prepared[key] = prepared
        self.ctx.reporter.info(f"Building {tree} ({kind}) in the {backend.name} sandbox")
        self.findings.append(_build_record(name, link, backend, name in self.policy.network))
        extra = self._hook(prepared, f"get_requires_for_build_{kind}", [])
        if isinstance(extra, list) and extra:
            if not all(isinstance(r, str) for r in extra):
                raise BuildFailed(f"{tree}: get_requires_for_build_{kind} returned non-strings")
            prepared.env = self._environment((*system.requires, *extra), str(tree))
        return prepared

    def _tree_wheel(self, prepared: _Prepared, editable: bool) -> Path:
        kind = "editable" if editable else "wheel"
        out = self._fresh(prepared.root / "out")
        result = self._hook(prepared, f"build_{kind}", [str(out)])
        if result is None:
            raise BuildFailed(
                f"{prepared.source}: its build backend cannot make an editable install (PEP 660)",
                hint="install it without -e, or update its build backend",
                reference="build-failed",
            )
        return self._keep_wheel(out, result, str(prepared.source))

    def _metadata_file(self, prepared: _Prepared, out: Path, name: str) -> bytes:
        if "/" in name or name in ("", ".", "..") or not name.endswith(".dist-info"):
            raise BuildFailed(
                f"{prepared.link.filename}: the backend named a bad metadata directory {name[:80]!r}"
            )
        path = out / name / "METADATA"
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 16 * 1024 * 1024:
            raise BuildFailed(f"{prepared.link.filename}: the backend produced no METADATA")
        return path.read_bytes()

    @property
    def _work(self) -> Path:
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="safepip-build-"))
        return self._work_dir

    # steps

    @staticmethod
    def _is_sdist(vf: VerifiedFile) -> bool:
        return isinstance(vf.pin.source, FileLink) and not vf.pin.source.is_wheel

    def _sandbox(self) -> sandbox.Backend:
        if self._backend is None:
            try:
                self._backend = sandbox.choose(self.policy.only).backend
            except sandbox.SandboxUnavailable:
                if not self.policy.unsandboxed:
                    raise
                self._backend = sandbox.Unsandboxed()
            if isinstance(self._backend, sandbox.Unsandboxed):
                self.ctx.reporter.warning(
                    "BUILDING WITHOUT A SANDBOX (--unsafe-unsandboxed-build): build code can read "
                    "your files and secrets and use the network"
                )
            else:
                self.ctx.reporter.detail(f"sandbox: {self._backend.name}")
        return self._backend

    def _prepare(self, link: FileLink) -> _Prepared:
        found = self._prepared.get(link.url)
        if found is not None:
            return found
        try:
            name = parse_sdist_filename(link.filename)[0]
        except InvalidSdistFilename:  # an unnamed archive by URL: its metadata names it
            name = canonicalize_name("unnamed")
        ((archive, _),) = download_all(
            self.ctx.session, [(link, Hashes())], self.ctx.store, self.ctx.settings.net.timeout
        )
        root = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self._work))
        for sub in ("home", "tmp", "out"):
            (root / sub).mkdir()
        source = unpack_sdist(archive, link.filename, root / "src", self.policy.caps)
        system = read_build_system(source, link.filename)
        self._scan(name, link, source, system)
        backend = self._sandbox()
        env = self._environment(system.requires, link.filename)
        prepared = _Prepared(link=link, name=name, root=root, source=source, system=system, env=env)
        self._prepared[link.url] = prepared
        self.ctx.reporter.info(f"Building {link.filename} in the {backend.name} sandbox")
        self.findings.append(_build_record(name, link, backend, name in self.policy.network))
        if name in self.policy.network:
            self.ctx.reporter.warning(
                f"{name}: its build may use the network ([sandbox.projects.{name}] network = true)"
            )
        extra = self._hook(prepared, "get_requires_for_build_wheel", [])
        if isinstance(extra, list) and extra:
            if not all(isinstance(r, str) for r in extra):
                raise BuildFailed(
                    f"{link.filename}: get_requires_for_build_wheel returned non-strings"
                )
            prepared.env = self._environment((*system.requires, *extra), link.filename)
        return prepared

    def _scan(
        self, name: NormalizedName, link: FileLink, source: Path, system: BuildSystem
    ) -> None:
        """The static scan, before any build code runs: refusals stop here, the rest is shown."""
        from safepip.scan import scan_findings

        found = scan_findings(name, source, self.ctx.settings.policy, system.backend_path)
        self.findings.extend(found)
        refusals = [f for f in found if f.action == "refuse"]
        if refusals:
            raise PolicyRefusal(
                f"{link.filename}: its build code is refused before running: "
                + "; ".join(f.message for f in refusals),
                hint=refusals[0].hint,
                reference="scan-refused",
            )

    def _metadata(self, prepared: _Prepared) -> bytes:
        out = self._fresh(prepared.root / "out")
        result = self._hook(prepared, "prepare_metadata_for_build_wheel", [str(out)])
        if result is None:
            wheel = self._build_wheel(prepared)
            prepared.wheel = wheel
            with zipfile.ZipFile(wheel) as zf:
                from safepip.fetch import read_wheel_metadata

                return read_wheel_metadata(zf, wheel.name)
        return self._metadata_file(prepared, out, str(result))

    @staticmethod
    def _fresh(path: Path) -> Path:
        sandbox.remove_tree(path)
        path.mkdir()
        return path

    def _build_wheel(self, prepared: _Prepared) -> Path:
        out = self._fresh(prepared.root / "out")
        result = self._hook(prepared, "build_wheel", [str(out)])
        return self._keep_wheel(out, result, prepared.link.filename)

    def _keep_wheel(self, out: Path, result: object, where: str) -> Path:
        """Copy the wheel a build hook named (a plain file name in ``out``) out of the sandbox's
        output directory."""
        name = str(result)
        path = out / name
        if "/" in name or not name.endswith(".whl") or path.is_symlink() or not path.is_file():
            raise BuildFailed(f"{where}: the backend produced no wheel")
        kept = self._work / "wheels"
        kept.mkdir(exist_ok=True)
        dest = kept / name
        shutil.copyfile(path, dest)
        return dest

    def _build(self, vf: VerifiedFile) -> VerifiedFile:
        from safepip.verify import verify_wheel

        pin = vf.pin
        assert isinstance(pin.source, FileLink)
        prepared = self._prepare(pin.source)
        if not prepared.metadata:
            prepared.metadata = self._metadata(prepared)
        wheel = prepared.wheel or self._build_wheel(prepared)
        self._check_wheel_name(pin, wheel)
        sha256 = hash_file(wheel)["sha256"]
        link = FileLink(
            filename=wheel.name,
            url=wheel.as_uri(),
            index_url=pin.source.index_url,
            hashes=Hashes.from_mapping({"sha256": sha256}),
        )
        built = dataclasses.replace(pin, source=link, metadata=pin.metadata or prepared.metadata)
        verify_wheel(built, wheel)
        self.ctx.reporter.detail(f"Built {wheel.name} from {pin.source.filename}")
        return VerifiedFile(pin=built, path=wheel, sha256=sha256)

    def _check_wheel_name(self, pin: Pin, wheel: Path) -> None:
        try:
            name, version, _build, tags = parse_wheel_filename(wheel.name)
        except InvalidWheelFilename:
            raise BuildFailed(
                f"the build of {pin.name} produced a badly named wheel {wheel.name!r}"
            ) from None
        if name != pin.name or version != pin.version:
            raise PolicyRefusal(
                f"building {pin.name} {pin.version} produced {wheel.name}",
                hint="the sdist builds a different project or version; do not install it",
                reference="built-wheel-mismatch",
            )
        if not self.ctx.settings.custom_tags and not set(tags) & set(self.ctx.options.tags):
            raise BuildFailed(f"{wheel.name} was built, but does not fit the target interpreter")

    # the sandboxed hook call

    def _hook(self, prepared: _Prepared, hook: str, args: list[str]) -> object:
        limits = self.policy.limits_for(prepared.name)
        request = prepared.root / "request.json"
        result_path = prepared.root / "result.json"
        for stale in (request, result_path):
            if stale.exists() or stale.is_symlink():
                stale.unlink()
        request.write_text(
            json.dumps(
                {
                    "hook": hook,
                    "args": args,
                    "backend": prepared.system.backend,
                    "backend_path": list(prepared.system.backend_path),
                    "source": str(prepared.source),
                    "result": str(result_path),
                    "limits": _driver_limits(limits),
                }
            )
        )
        log = prepared.root / "log"
        python = prepared.env / "bin" / "python"
        job = sandbox.Job(
            argv=(str(python), "-I", "-B", str(DRIVER), str(request)),
            cwd=prepared.source,
            writable=prepared.root,
            readable=self._readable(prepared.env),
            env=self._build_env(prepared),
            log=log,
            network=prepared.name in self.policy.network,
            also_writable=()
            if prepared.source.is_relative_to(prepared.root)
            else (prepared.source,),
        )
        done = sandbox.run(self._sandbox(), job, limits)
        if done.timed_out:
            raise BuildFailed(
                f"building {prepared.link.filename} ({hook}) was stopped after the "
                f"{limits.timeout:g} s timeout",
                hint=f"raise it for this project in your policy: [sandbox.projects.{prepared.name}] timeout = ...",
                reference="build-timeout",
            )
        outcome = _read_result(result_path)
        if done.returncode != 0 or "error" in outcome or not outcome:
            raise self._failure(prepared, hook, outcome, log, done.returncode)
        if outcome.get("missing"):
            if hook == "build_wheel":
                raise BuildFailed(f"{prepared.link.filename}: the backend has no build_wheel hook")
            return None
        return outcome.get("value")

    def _failure(
        self, prepared: _Prepared, hook: str, outcome: Mapping[str, Any], log: Path, code: int
    ) -> BuildFailed:
        tail = _tail(log)
        why = str(outcome.get("error") or f"exit status {code}")
        hint = "the build's output is shown above the error"
        if any(sign in tail for sign in _NETWORK_SIGNS):
            hint = (
                "the build tried to use the network, which the sandbox blocks: install a wheel "
                "instead, use an sdist that vendors what it fetches, or allow it in your own "
                f"policy: [sandbox.projects.{prepared.name}] network = true"
            )
        return BuildFailed(
            f"building {prepared.link.filename} failed in {hook}: {why[:300]}",
            context=tuple(tail.splitlines()[-15:]),
            hint=hint,
        )

    def _readable(self, env: Path) -> tuple[Path, ...]:
        target = self.ctx.target
        paths = [env, DRIVER, Path(target.base_prefix), Path(os.path.realpath(target.executable))]
        return (*paths, *self._toolchains().values())

    def _toolchains(self) -> dict[str, Path]:
        """A user's Rust toolchains, read-only: rustup's directory and cargo's ``bin`` only
        (never the rest of ``~/.cargo``, where ``credentials.toml`` and registry tokens live)."""
        home = self.ctx.environ.get("HOME")
        if not home:
            return {}
        found = {"cargo-bin": Path(home, ".cargo", "bin"), "rustup": Path(home, ".rustup")}
        return {k: p for k, p in found.items() if p.is_dir() and not p.is_symlink()}

    def _build_env(self, prepared: _Prepared) -> dict[str, str]:
        path = [str(prepared.env / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]
        env = {
            "HOME": str(prepared.root / "home"),
            "TMPDIR": str(prepared.root / "tmp"),
            "LANG": "C.UTF-8",
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PIP_NO_INDEX": "1",
            "PIP_CONFIG_FILE": os.devnull,
        }
        tools = self._toolchains()
        if "cargo-bin" in tools:
            path.insert(1, str(tools["cargo-bin"]))
            env["CARGO_HOME"] = str(prepared.root / "home" / ".cargo")  # private and empty
        if "rustup" in tools:
            env["RUSTUP_HOME"] = str(tools["rustup"])
        env["PATH"] = ":".join(path)
        for key in (*BUILD_VARIABLES, *self.policy.pass_env):
            value = self.ctx.environ.get(key)
            if value is not None:
                env[key] = value
        return env

    # build environments

    def _environment(self, requires: Sequence[str], where: str) -> Path:
        wheels = self._resolve_requirements(requires, where)
        target = self.ctx.target
        key = hashlib.sha256(
            json.dumps(
                [
                    os.path.realpath(target.executable),
                    list(target.version),
                    sorted((p.name, str(p.version), sha) for p, _, sha in wheels),
                ]
            ).encode()
        ).hexdigest()[:32]
        if key in self._envs:
            return self._envs[key]
        base = (self.ctx.cache_dir / "build-envs") if self.ctx.cache_dir else self._work / "envs"
        env = base / key
        if not (env / ".complete").is_file():
            self._create_environment(env, wheels)
        self._envs[key] = env
        return env

    def _resolve_requirements(
        self, requires: Sequence[str], where: str
    ) -> list[tuple[Pin, Path, str]]:
        """Build requirements resolved to wheels only, downloaded and hash-checked."""
        from safepip.resolve import resolve
        from safepip.verify import verify_wheel

        reqs = [_build_requirement(text, where) for text in requires]
        if not reqs:
            return []
        options = dataclasses.replace(
            self.ctx.options,
            installed={},
            allows_source=_never,
            allows_binary=_always,
            upgrade=False,
            force_reinstall=False,
            ignore_installed=True,
            no_deps=False,
        )
        pinned = self.ctx.build_constraints
        plan = resolve(
            reqs,
            pinned.constraints,
            self.ctx.links,
            self.ctx.metadata,
            options,
            builder=_WheelsOnly(),
        )
        pins = list(plan.to_install())
        check_build_pins(pins, pinned, where)
        for pin in pins:
            assert isinstance(pin.source, FileLink)
        files = download_all(
            self.ctx.session,
            [(p.source, p.expected_hashes) for p in pins if isinstance(p.source, FileLink)],
            self.ctx.store,
            self.ctx.settings.net.timeout,
        )
        wheels = []
        for pin, (path, digests) in zip(pins, files, strict=True):
            verify_wheel(pin, path)
            wheels.append((pin, path, digests["sha256"]))
        return wheels

    def _create_environment(self, env: Path, wheels: Sequence[tuple[Pin, Path, str]]) -> None:
        import subprocess

        env.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=env.parent))
        try:
            made = subprocess.run(
                [self.ctx.target.executable, "-m", "venv", "--without-pip", str(staging)],
                capture_output=True,
                text=True,
                check=False,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            )
            if made.returncode != 0:
                raise BuildFailed(
                    f"cannot create a build environment: {made.stderr.strip()[-300:]}"
                )
            major, minor = self.ctx.target.version[:2]
            site = staging / "lib" / f"python{major}.{minor}" / "site-packages"
            for _pin, path, _sha in wheels:
                _unpack_wheel(path, site, staging / "bin")
            # Byte-compiled here, outside: the environment is read-only inside the sandbox,
            # and every hook would otherwise compile its backend again.
            subprocess.run(
                [self.ctx.target.executable, "-I", "-m", "compileall", "-q", "-j", "0", str(site)],
                capture_output=True,
                check=False,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            )
            (staging / ".complete").write_text("")
            try:
                staging.rename(env)
            except OSError:
                if not (env / ".complete").is_file():
                    raise
        finally:
            if staging.exists():
                sandbox.remove_tree(staging)


def _build_record(
    name: NormalizedName, link: FileLink, backend: sandbox.Backend, network: bool
) -> Finding:
    """What the report says about each build: where it ran (a warning when unsandboxed)."""
    unsandboxed = isinstance(backend, sandbox.Unsandboxed)
    return Finding(
        gate="build",
        project=name,
        message=(
            f"{link.filename} was built WITHOUT a sandbox"
            if unsandboxed
            else f"{link.filename} was built in the {backend.name} sandbox"
            + (", with network access" if network else "")
        ),
        action="warn" if unsandboxed else "report",
        rule="unsandboxed-build" if unsandboxed else "sandboxed-build",
        details=(("backend", backend.name), ("network", str(network or unsandboxed).lower())),
    )


def _build_requirement(text: str, where: str) -> UserRequirement:
    try:
        return UserRequirement(Requirement(text), comes_from=f"build requirement of {where}")
    except InvalidRequirement:
        raise BuildFailed(f"{where}: invalid build requirement {text[:120]!r}") from None


def _always(_name: NormalizedName) -> bool:
    return True


def _never(_name: NormalizedName) -> bool:
    return False


class _WheelsOnly:
    """Build requirements come from wheels: an sdist among them is never built."""

    def prepare_metadata(self, link: FileLink) -> bytes:
        raise PolicyRefusal(
            f"{link.filename} is needed to build another sdist, and build requirements are "
            "installed from wheels only",
            hint="use a version of the project that has a wheel, or --only-binary :all:",
            reference="build-requirement-sdist",
        )


def _driver_limits(limits: sandbox.Limits) -> dict[str, int]:
    return {
        "cpu_seconds": limits.cpu_seconds,
        "memory_bytes": limits.memory_bytes,
        "file_size_bytes": limits.file_size_bytes,
        "open_files": limits.open_files,
        "processes": _process_count() + limits.processes,
    }


def _process_count() -> int:
    """Processes of this user now: RLIMIT_NPROC counts all of them, so the limit is headroom."""
    uid = os.getuid()
    count = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


def _read_result(path: Path) -> dict[str, Any]:
    try:
        if path.is_symlink() or path.stat().st_size > 1 << 20:
            return {}
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _tail(log: Path, limit: int = 8192) -> str:
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - limit))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _unpack_wheel(wheel: Path, site: Path, scripts: Path) -> None:
    """Install a hash-checked wheel of a build requirement into a fresh environment: purelib and
    platlib into site-packages, scripts into bin; no member may leave its directory."""
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            name = info.filename
            parts = name.split("/")
            if name.startswith("/") or "\\" in name or ".." in parts or "\0" in name:
                raise PolicyRefusal(
                    f"{wheel.name} has an unsafe member {name[:120]!r}", reference="invalid-wheel"
                )
            if info.is_dir() or (info.external_attr >> 16) & 0o170000 == 0o120000:
                continue
            dest_root = site
            if ".data" in parts[0] and parts[0].endswith(".data") and len(parts) > 2:
                kind, rest = parts[1], parts[2:]
                if kind in ("purelib", "platlib"):
                    parts = rest
                elif kind == "scripts":
                    dest_root, parts = scripts, rest
                else:
                    continue
            dest = dest_root.joinpath(*parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out)
            if (info.external_attr >> 16) & 0o111 or dest_root is scripts:
                dest.chmod(0o755)
