"""The wheel content gate: nothing a verified wheel unpacks may break its RECORD, overwrite
another project's files, shadow a command, run at interpreter start-up or leave the install
scheme. Runs on the downloaded files before pip does, and returns findings."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from packaging.utils import NormalizedName, canonicalize_name

from safepip.config import Settings
from safepip.errors import ConfigError
from safepip.models import FileLink, Finding, VerifiedFile
from safepip.ownership import Ownership, read_ownership
from safepip.policyfile import Policy
from safepip.target import Target
from safepip.wheelscan import Member, Problem, WheelContents, scan_wheel

__all__ = [
    "GATE",
    "GatePolicy",
    "InstallLayout",
    "WheelInput",
    "check_wheel_contents",
    "judge_wheels",
    "layout_for",
    "layout_from",
]

GATE = "wheel-content"
_POLICY_SECTION = "wheelgate"
_ALLOW_KEYS = {
    "allow-clobber": "clobber",
    "allow-commands": "command",
    "allow-startup": "startup",
    "allow-bad-record": "record",
}

# Start-up code (.pth import lines) that real, popular projects ship, measured by scanning their
# wheels (benchmarks/wheelgate_fp.py): project → the .pth file it installs.
BUILTIN_STARTUP = {
    "setuptools": frozenset({"distutils-precedence.pth"}),  # switches to its own distutils
    "coverage": frozenset({"a1_coverage.pth"}),  # measures subprocesses when asked to
    "cmeel": frozenset({"cmeel.pth"}),  # adds its prefix's site-packages to sys.path
    "pytest-cov": frozenset({"pytest-cov.pth"}),  # up to 5.x: coverage in subprocesses
    "pywin32": frozenset({"pywin32.pth"}),  # loads its DLLs (Windows)
}

# Projects that ship the same modules as alternative builds and cannot be installed together.
_ALTERNATIVES: tuple[frozenset[str], ...] = (
    frozenset(
        {
            "opencv-python",
            "opencv-python-headless",
            "opencv-contrib-python",
            "opencv-contrib-python-headless",
        }
    ),
    frozenset({"psycopg2", "psycopg2-binary"}),
    frozenset({"pycrypto", "pycryptodome"}),
    frozenset({"tensorflow", "tensorflow-cpu", "tensorflow-gpu"}),
    frozenset({"onnxruntime", "onnxruntime-gpu"}),
    frozenset({"faiss-cpu", "faiss-gpu"}),
    frozenset({"pyjwt", "jwt"}),
    frozenset({"bson", "pymongo"}),
    frozenset({"attrs", "attr"}),
    frozenset({"pyserial", "serial"}),
    frozenset({"python-docx", "docx"}),
    frozenset({"msgpack", "msgpack-python"}),
    frozenset({"pygame", "pygame-ce"}),  # measured: pygame-ce ships the pygame package
)

_RESERVED_COMMAND = re.compile(
    r"^(?:(?P<python>python(?:3(?:\.\d+)?)?)|(?P<pip>pip(?:3(?:\.\d+)?)?)|"
    r"(?P<safepip>safepip)|(?P<venv>activate(?:\..*|_this\.py)?|deactivate))$"
)
_COMMAND_SUFFIXES = ("-script.pyw", "-script.py", ".exe", ".bat", ".cmd", ".ps1", ".pyw", ".py")
_SHELL_STARTUP = frozenset(
    {
        ".bashrc",
        ".bash_profile",
        ".bash_login",
        ".bash_logout",
        ".profile",
        ".zshrc",
        ".zshenv",
        ".zprofile",
        ".zlogin",
        ".cshrc",
        ".tcshrc",
        ".login",
        "config.fish",
    }
)
_STARTUP_MODULES = frozenset({"sitecustomize.py", "usercustomize.py"})
# The namespace-package .pth lines setuptools writes (every quoted identifier replaced by 'N'):
# the current template (setuptools/namespaces.py) and the one in older wheels (measured).
_NSPKG_LINES = frozenset(
    {
        "import sys, types, os;p = os.path.join(sys._getframe(1).f_locals['N'], *('N',));"
        "importlib = __import__('N');__import__('N');m = sys.modules.setdefault('N', "
        "importlib.util.module_from_spec(importlib.machinery.PathFinder.find_spec('N', "
        "[os.path.dirname(p)])));m = m or sys.modules.setdefault('N', types.ModuleType('N'));"
        "mp = (m or []) and m.__dict__.setdefault('N',[]);(p not in mp) and mp.append(p)",
        "import sys, types, os;has_mfs = sys.version_info > (3, 5);p = os.path.join("
        "sys._getframe(1).f_locals['N'], *('N',));importlib = has_mfs and __import__('N');"
        "has_mfs and __import__('N');m = has_mfs and sys.modules.setdefault('N', "
        "importlib.util.module_from_spec(importlib.machinery.PathFinder.find_spec('N', "
        "[os.path.dirname(p)])));m = m or sys.modules.setdefault('N', types.ModuleType('N'));"
        "mp = (m or []) and m.__dict__.setdefault('N',[]);(p not in mp) and mp.append(p)",
    }
)
_NSPKG_PARENT_SUFFIX = ";m and setattr(sys.modules['N'], 'N', m)"


@dataclass(frozen=True, slots=True)
class WheelInput:
    """A verified wheel to judge. ``local_editable`` marks an editable wheel safepip built itself
    from the user's own tree: its import hooks (``.pth`` start-up lines) are allowed."""

    project: NormalizedName
    filename: str
    path: Path
    local_editable: bool = False


@dataclass(frozen=True, slots=True)
class InstallLayout:
    """Where each scheme key installs (real, absolute paths), and where installed
    distributions are read from."""

    purelib: str
    platlib: str
    scripts: str
    data: str
    headers: str

    def root(self, scheme: str, project: str) -> str:
        if scheme == "headers":
            return os.path.join(self.headers, project)
        root: str = getattr(self, scheme)
        return root

    @property
    def site_dirs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.purelib, self.platlib)))


@dataclass(frozen=True, slots=True)
class GatePolicy:
    """Projects the user's trusted policy lets break one rule each."""

    clobber: frozenset[NormalizedName] = frozenset()
    command: frozenset[NormalizedName] = frozenset()
    startup: frozenset[NormalizedName] = frozenset()
    record: frozenset[NormalizedName] = frozenset()

    @classmethod
    def from_policy(cls, policy: Policy) -> tuple[GatePolicy, list[Finding]]:
        section = policy.section(_POLICY_SECTION)
        values: dict[str, frozenset[NormalizedName]] = {}
        for key, value in section.items():
            if key not in _ALLOW_KEYS:
                raise ConfigError(
                    f"unknown key {key!r} in the policy's [{_POLICY_SECTION}] table",
                    hint="the keys are " + ", ".join(sorted(_ALLOW_KEYS)),
                )
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"[{_POLICY_SECTION}] {key} must be a list of project names")
            values[_ALLOW_KEYS[key]] = frozenset(canonicalize_name(v) for v in value)
        ignored = [
            Finding(
                gate=GATE,
                project="(policy)",
                message=f"the project's own policy may not loosen [{_POLICY_SECTION}] {key}; "
                "ignored",
                action="warn",
                rule="policy-ignored",
                hint="move it to your user policy or pass --policy FILE",
            )
            for key in policy.project_section(_POLICY_SECTION)
            if key in _ALLOW_KEYS
        ]
        return cls(**values), ignored


def layout_for(
    purelib: str,
    platlib: str,
    scripts: str,
    data: str,
    headers: str,
    *,
    target_dir: str | None = None,
    prefix: str | None = None,
    old_prefix: str = "",
    root: str | None = None,
) -> InstallLayout:
    """The layout pip will install into, for the target's scheme and pip's location options."""
    if target_dir:
        purelib = platlib = data = target_dir
        scripts = os.path.join(target_dir, "bin")
        headers = os.path.join(target_dir, "include")
    paths = [purelib, platlib, scripts, data, headers]
    if prefix and not target_dir and old_prefix:
        paths = [
            os.path.join(prefix, os.path.relpath(p, old_prefix))
            if p == old_prefix or p.startswith(old_prefix.rstrip(os.sep) + os.sep)
            else p
            for p in paths
        ]
    if root:
        paths = [os.path.join(root, os.path.relpath(p, os.sep)) for p in paths]
    real = [os.path.realpath(p) if p else "" for p in paths]
    return InstallLayout(*real)


@dataclass
class _Judge:
    """Applies the rules to the scanned wheels of one plan."""

    layout: InstallLayout
    ownership: Ownership
    policy: GatePolicy
    planned: frozenset[NormalizedName]
    findings: list[Finding]
    plan_files: dict[str, tuple[NormalizedName, str, str]]
    plan_commands: dict[str, tuple[NormalizedName, str]]
    clashes: dict[tuple[str, str], tuple[WheelContents, str, list[str]]] = field(
        default_factory=dict
    )

    def add(
        self,
        wheel: WheelContents,
        rule: str,
        file: str,
        message: str,
        hint: str,
        action: Literal["refuse", "warn", "report"] = "refuse",
        **details: str,
    ) -> None:
        self.findings.append(
            Finding(
                gate=GATE,
                project=wheel.project,
                message=f"{wheel.filename}: {file} {message}",
                action=action,
                rule=rule,
                hint=hint,
                details=(("wheel", wheel.filename), ("file", file), *sorted(details.items())),
            )
        )

    # rules -------------------------------------------------------------------------------

    def problems(self, wheel: WheelContents) -> None:
        for p in wheel.problems:
            self.add(
                wheel,
                p.rule,
                p.file,
                p.message,
                _problem_hint(p, wheel.project, self.policy),
                action=_problem_action(p, wheel.project, self.policy),
            )

    def member(self, wheel: WheelInput, contents: WheelContents, m: Member) -> None:
        dest = os.path.normpath(
            os.path.join(self.layout.root(m.scheme, contents.project), m.relpath)
        )
        parent = os.path.dirname(dest)
        if parent == self.layout.scripts:
            self.command(contents, os.path.basename(dest), m.name, m.sha256)
            return
        if m.scheme == "data":
            self.sensitive_data(contents, m)
        if parent in self.layout.site_dirs:
            self.startup(wheel, contents, m, os.path.basename(dest))
        self.clobber(contents, m, dest)

    def clobber(self, wheel: WheelContents, m: Member, dest: str) -> None:
        other = self.plan_files.setdefault(dest, (wheel.project, m.sha256, wheel.filename))
        if other[0] != wheel.project and other[1] != m.sha256:
            self._clobbered(wheel, m.name, other[0], f"the planned wheel {other[2]}")
            return
        owner = self.ownership.files.get(dest)
        if owner is None:
            if os.path.lexists(dest) and wheel.project not in self.ownership.projects:
                self.add(
                    wheel,
                    "overwrites-unowned",
                    m.name,
                    "would overwrite a file that no installed distribution lists",
                    "check where that file came from; pip overwrites it as it is",
                    action="warn",
                    path=dest,
                )
            return
        if owner.project == wheel.project or owner.project in self.planned:
            return
        if _same_bytes(dest, m.sha256, owner.record_hash):
            return
        self._clobbered(wheel, m.name, owner.project, f"the installed {owner.project}")

    def _clobbered(self, wheel: WheelContents, file: str, owner: str, where: str) -> None:
        self.clashes.setdefault((wheel.filename, owner), (wheel, where, []))[2].append(file)

    def report_clashes(self) -> None:
        """One finding per wheel and owner, naming the first file and counting the rest."""
        for (_, owner), (wheel, where, files) in self.clashes.items():
            more = f" (and {len(files) - 1} more)" if len(files) > 1 else ""
            action: Literal["refuse", "report"] = (
                "report" if wheel.project in self.policy.clobber else "refuse"
            )
            if _alternatives(wheel.project, owner):
                hint = (
                    f"{wheel.project} and {owner} are alternative builds of the same modules and "
                    f"cannot be installed together: keep only one (e.g. `pip uninstall {owner}`)"
                )
            else:
                hint = (
                    f"if {wheel.project} really replaces {owner}, uninstall {owner} first, or "
                    f"allow it in your safepip policy: [{_POLICY_SECTION}] allow-clobber = "
                    f'["{wheel.project}"]'
                )
            self.add(
                wheel,
                "clobber",
                files[0],
                f"would overwrite a file of {where}{more}",
                hint,
                action=action,
                owner=owner,
                files=str(len(files)),
            )
        self.clashes.clear()

    def command(self, wheel: WheelContents, name: str, file: str, sha256: str = "") -> None:
        owner = _reserved_owner(name)
        reason = ""
        if owner is not None and owner != wheel.project:
            reason = f"takes the name of {_describe_reserved(name)}"
        else:
            planned = self.plan_commands.setdefault(name, (wheel.project, wheel.filename))
            installed = self.ownership.commands.get(name)
            if planned[0] != wheel.project:
                owner, reason = planned[0], f"is also a command of the planned wheel {planned[1]}"
            elif (
                installed is not None
                and installed != wheel.project
                and installed not in self.planned
            ):
                owner, reason = installed, f"is a command of the installed {installed}"
            elif installed is None and os.path.lexists(os.path.join(self.layout.scripts, name)):
                if wheel.project not in self.ownership.projects:
                    self.add(
                        wheel,
                        "overwrites-unowned",
                        file,
                        f"would overwrite the command {name!r}, which no installed distribution "
                        "lists",
                        "check where that command came from; pip overwrites it as it is",
                        action="warn",
                    )
                return
        if not reason:
            return
        action: Literal["refuse", "report"] = (
            "report" if wheel.project in self.policy.command else "refuse"
        )
        self.add(
            wheel,
            "command-shadowing",
            file,
            f"installs the command {name!r}, which {reason}",
            f"if {wheel.project} should provide {name!r}, allow it in your safepip policy: "
            f'[{_POLICY_SECTION}] allow-commands = ["{wheel.project}"]',
            action=action,
            command=name,
            owner=owner or "",
        )

    def startup(self, wheel: WheelInput, contents: WheelContents, m: Member, base: str) -> None:
        if base in _STARTUP_MODULES:
            code = f"is {base}, which Python runs at every start"
        elif base.endswith(".pth"):
            lines = _import_lines(contents.small_files.get(m.name, b""))
            if not lines or (base.endswith("-nspkg.pth") and _is_nspkg(lines)):
                return
            code = f"runs code at every interpreter start: {lines[0][:80]!r}"
        else:
            return
        allowed_by = _startup_allowed(wheel, base, self.policy)
        self.add(
            contents,
            "startup-code",
            m.name,
            code + (f" (allowed: {allowed_by})" if allowed_by else ""),
            f"if you trust {contents.project} to run code in every Python process, allow it in "
            f'your safepip policy: [{_POLICY_SECTION}] allow-startup = ["{contents.project}"]',
            action="report" if allowed_by else "refuse",
        )

    def sensitive_data(self, wheel: WheelContents, m: Member) -> None:
        rel = m.relpath.replace("\\", "/")
        base = rel.rsplit("/", 1)[-1]
        if rel.startswith("etc/") or base in _SHELL_STARTUP or "/profile.d/" in f"/{rel}":
            self.add(
                wheel,
                "sensitive-data",
                m.name,
                "is a configuration or shell start-up file under the environment's prefix",
                "review what it configures; nothing is refused",
                action="report",
            )


def _problem_action(
    problem: Problem, project: NormalizedName, policy: GatePolicy
) -> Literal["refuse", "report"]:
    if problem.rule.startswith("record-") and project in policy.record:
        return "report"
    return "refuse"


def _problem_hint(problem: Problem, project: NormalizedName, policy: GatePolicy) -> str:
    if problem.rule.startswith("record-"):
        return (
            "the wheel's files do not match its own RECORD, so it changed after it was built; "
            "if you trust it anyway: "
            f'[{_POLICY_SECTION}] allow-bad-record = ["{project}"] in your safepip policy'
        )
    return {
        "unsafe-path": "no opt-out: a wheel may not write outside the environment; "
        "do not install this file",
        "special-file": "no opt-out: a wheel holds only regular files; do not install this file",
        "data-scheme": "no opt-out: pip itself refuses unknown .data scheme directories",
        "foreign-dist-info": "no opt-out: a wheel may describe only its own project",
    }.get(problem.rule, "no opt-out: the wheel is malformed; do not install this file")


def _same_bytes(path: str, sha256: str, record_hash: str) -> bool:
    """Whether the file already at ``path`` (or, if it is gone, its RECORD hash) equals ours."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1024 * 1024):
                h.update(chunk)
        return h.hexdigest() == sha256
    except OSError:
        pass
    algorithm, _, digest = record_hash.partition("=")
    if algorithm != "sha256" or not digest:
        return False
    return base64.urlsafe_b64encode(bytes.fromhex(sha256)).rstrip(b"=").decode() == digest


def _alternatives(a: str, b: str) -> bool:
    return any(a in group and b in group for group in _ALTERNATIVES)


def _command_stem(name: str) -> str:
    lowered = name.lower()
    for suffix in _COMMAND_SUFFIXES:
        if lowered.endswith(suffix):
            return lowered[: -len(suffix)]
    return lowered


def _reserved_owner(name: str) -> str | None:
    """The only project that may install a reserved command name ("" for none), else None."""
    match = _RESERVED_COMMAND.match(_command_stem(name))
    if match is None:
        return None
    if match.group("pip"):
        return "pip"
    if match.group("safepip"):
        return "safepip"
    return ""


def _describe_reserved(name: str) -> str:
    match = _RESERVED_COMMAND.match(_command_stem(name))
    if match is not None and match.group("venv"):
        return "the virtual environment's own script"
    if match is not None and match.group("python"):
        return "the Python interpreter"
    return "an installer"


def _import_lines(data: bytes) -> list[str]:
    """The lines of a .pth file that ``site`` executes."""
    text = data.decode("utf-8", "replace")
    return [
        line.rstrip("\r") for line in text.splitlines() if line.startswith(("import ", "import\t"))
    ]


_QUOTED_NAME = re.compile(r"'[A-Za-z_][A-Za-z0-9_.]*'")


def _is_nspkg(lines: Iterable[str]) -> bool:
    """Every line is setuptools' namespace-package boilerplate, for some package names."""
    for line in lines:
        shape = _QUOTED_NAME.sub("'N'", line.strip())
        shape = re.sub(r"\*\('N'(?:, 'N')*,?\)", "*('N',)", shape)
        shape = shape.removesuffix(_NSPKG_PARENT_SUFFIX)
        if shape not in _NSPKG_LINES:
            return False
    return True


def _startup_allowed(wheel: WheelInput, base: str, policy: GatePolicy) -> str:
    if wheel.local_editable:
        return "an editable wheel safepip built from your own tree"
    if wheel.project in policy.startup:
        return "your policy"
    if base in BUILTIN_STARTUP.get(wheel.project, frozenset()):
        return "safepip's built-in list"
    return ""


def judge_wheels(
    wheels: Sequence[WheelInput],
    contents: Sequence[WheelContents],
    layout: InstallLayout | None,
    ownership: Ownership,
    policy: GatePolicy,
) -> list[Finding]:
    """Every finding for ``wheels`` (scanned as ``contents``); with no layout (download, wheel)
    only the archive rules apply."""
    judge = _Judge(
        layout=layout or InstallLayout("", "", "", "", ""),
        ownership=ownership,
        policy=policy,
        planned=frozenset(w.project for w in wheels),
        findings=[],
        plan_files={},
        plan_commands={},
    )
    for wheel, scanned in zip(wheels, contents, strict=True):
        judge.problems(scanned)
        if layout is None:
            continue
        for m in scanned.members:
            judge.member(wheel, scanned, m)
        for name, _group in scanned.commands:
            judge.command(scanned, name, f"{scanned.dist_info}/entry_points.txt")
    judge.report_clashes()
    return judge.findings


def scan_all(wheels: Sequence[WheelInput], workers: int = 4) -> list[WheelContents]:
    """Read every wheel once, a few at a time (decompression and hashing release the GIL)."""
    if len(wheels) <= 1:
        return [scan_wheel(w.path, w.filename, w.project) for w in wheels]
    with ThreadPoolExecutor(max_workers=min(workers, len(wheels))) as pool:
        return list(pool.map(lambda w: scan_wheel(w.path, w.filename, w.project), wheels))


def wheel_inputs(
    files: Sequence[VerifiedFile], local_editables: Collection[Path] = ()
) -> list[WheelInput]:
    editable = {Path(p) for p in local_editables}
    out = []
    for vf in files:
        assert isinstance(vf.pin.source, FileLink)
        if vf.pin.source.is_wheel:
            out.append(
                WheelInput(vf.pin.name, vf.pin.source.filename, vf.path, vf.path in editable)
            )
    return out


def check_wheel_contents(
    files: Sequence[VerifiedFile],
    *,
    policy: Policy,
    layout: InstallLayout | None,
    local_editables: Collection[Path] = (),
) -> list[Finding]:
    """The gate: scan every verified wheel once and judge it against the target ``layout``
    (None for download and wheel: only the archive's own rules). ``local_editables`` are the
    paths of editable wheels safepip built from the user's own tree."""
    gate_policy, findings = GatePolicy.from_policy(policy)
    wheels = wheel_inputs(files, local_editables)
    if not wheels:
        return findings
    ownership = (
        read_ownership(layout.site_dirs, layout.scripts) if layout is not None else Ownership()
    )
    contents = scan_all(wheels)
    return findings + judge_wheels(wheels, contents, layout, ownership, gate_policy)


def layout_from(settings: Settings, target: Target) -> InstallLayout | None:
    """The layout of an install run (None for download and wheel, which install nothing)."""
    if settings.command != "install":
        return None
    paths = dict(target.user_paths) if settings.user else {}
    return layout_for(
        paths.get("purelib", target.purelib),
        paths.get("platlib", target.platlib),
        paths.get("scripts", target.scripts),
        paths.get("data", target.data or target.prefix),
        paths.get("include", target.include or os.path.join(target.prefix, "include")),
        target_dir=settings.target_dir,
        prefix=settings.prefix,
        old_prefix=target.prefix,
        root=settings.root,
    )
