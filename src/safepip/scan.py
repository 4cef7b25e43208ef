"""Static pre-build scan of an sdist's build code (``setup.py``, other top-level Python, in-tree
build backends) for the signals attackers use, reported as findings before any hook runs."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packaging.utils import NormalizedName, canonicalize_name

from safepip.models import Finding
from safepip.policyfile import Policy

__all__ = ["SIGNALS", "Signal", "scan_findings", "scan_source", "scan_tree"]

# What each signal means, in the words findings use.
SIGNALS: Mapping[str, str] = {
    "network": "opens network connections",
    "process": "starts other programs",
    "obfuscated-exec": "executes decoded or decompressed code",
    "encoded-blob": "carries a long encoded or compressed blob",
    "native-code": "loads native code through ctypes",
    "credentials": "names credential files or secret variables",
    "write-outside": "writes outside its source tree (home, /etc, shell profiles, .pth files)",
}
# The combinations refused by default: each pairs a way to hide or reach secrets with a way out.
REFUSED_COMBINATIONS = (
    frozenset({"obfuscated-exec", "network"}),
    frozenset({"obfuscated-exec", "credentials"}),
    frozenset({"credentials", "network"}),
)
MAX_FILES = 200
MAX_FILE_BYTES = 2 << 20
_NETWORK_MODULES = frozenset(
    {
        "socket",
        "urllib.request",
        "urllib2",
        "urllib3",
        "http.client",
        "httplib",
        "requests",
        "httpx",
        "aiohttp",
        "ftplib",
        "smtplib",
        "telnetlib",
        "paramiko",
        "pycurl",
        "websocket",
        "dns.resolver",
    }
)
_NETWORK_CALLS = frozenset(
    {"urlopen", "urlretrieve", "create_connection", "getaddrinfo", "gethostbyname"}
)
_PROCESS_CALLS = frozenset(
    {
        "system",
        "popen",
        "Popen",
        "call",
        "check_call",
        "check_output",
        "run",
        "spawn",
        "getoutput",
        "getstatusoutput",
        "execv",
        "execve",
        "execvp",
        "execvpe",
        "execl",
        "execlp",
        "spawnv",
        "spawnl",
        "spawnvp",
        "startfile",
    }
)
_PROCESS_OWNERS = frozenset({"os", "subprocess", "pty", "commands"})
_DECODERS = frozenset(
    {
        "b64decode",
        "b32decode",
        "b16decode",
        "a85decode",
        "b85decode",
        "decodebytes",
        "decodestring",
        "unhexlify",
        "fromhex",
        "decompress",
        "loads",
        "rot13",
    }
)
_EXEC_CALLS = frozenset({"exec", "eval", "compile", "execfile", "__import__", "import_module"})
_CREDENTIAL_MARKERS = (
    ".ssh",
    "id_rsa",
    "id_ed25519",
    "id_ecdsa",
    ".aws",
    ".netrc",
    ".pypirc",
    ".npmrc",
    ".docker/config",
    ".kube/config",
    ".gnupg",
    "/etc/shadow",
    "aws_secret",
    "aws_access_key",
    "github_token",
    "gh_token",
    "npm_token",
    "pypi_token",
    "twine_password",
    "login data",
    "wallet.dat",
    "local storage/leveldb",
    ".git-credentials",
    "keychain",
)
_OUTSIDE_MARKERS = (
    ".bashrc",
    ".bash_profile",
    ".profile",
    ".zshrc",
    ".pth",
    "site-packages",
    "crontab",
    "/etc/",
    "autostart",
    "launchagents",
    "/usr/",
    "~/",
    "/root/",
    "/home/",
)


@dataclass(frozen=True, slots=True)
class Signal:
    """One place in one file where build code shows a signal."""

    rule: str
    path: str
    line: int


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    if isinstance(node, ast.Call):
        return _dotted(node.func)
    return ""


def _strings(node: ast.AST) -> Iterator[str]:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub.value


def _calls_any(node: ast.AST, names: frozenset[str]) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and _dotted(sub.func).rsplit(".", 1)[-1] in names:
            return True
        if (
            isinstance(sub, ast.Constant)
            and isinstance(sub.value, str)
            and sub.value in ("rot13", "rot_13", "hex", "zlib", "base64")
        ):
            return True
    return False


def _is_blob(value: str | bytes) -> bool:
    if isinstance(value, bytes):
        return len(value) >= 64 and value[:2] in (b"x\x9c", b"x\xda", b"BZ", b"\x1f\x8b", b"\xfd7")
    text = "".join(value.split())
    if len(text) < 256:
        return False
    b64 = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_")
    return set(text) <= b64 and any(c.isdigit() for c in text) and any(c.isupper() for c in text)


class _Visitor(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.found: list[Signal] = []

    def add(self, rule: str, node: ast.AST) -> None:
        self.found.append(Signal(rule, self.path, getattr(node, "lineno", 0)))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._module(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        self._module(module, node)
        for alias in node.names:
            self._module(f"{module}.{alias.name}", node)

    def _module(self, name: str, node: ast.AST) -> None:
        if name in _NETWORK_MODULES or name.split(".")[0] in {
            "requests",
            "httpx",
            "aiohttp",
            "urllib3",
            "paramiko",
        }:
            self.add("network", node)
        if name.split(".")[0] == "ctypes":
            self.add("native-code", node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted(node.func)
        last = name.rsplit(".", 1)[-1]
        owner = name.split(".")[0]
        if last in _NETWORK_CALLS:
            self.add("network", node)
        if last in _PROCESS_CALLS and (owner in _PROCESS_OWNERS or name == last == "Popen"):
            self.add("process", node)
        if last in _EXEC_CALLS and any(_calls_any(arg, _DECODERS) for arg in node.args):
            self.add("obfuscated-exec", node)
        if last in ("open", "write_text", "write_bytes", "copy", "copyfile", "move", "symlink"):
            self._write(node, name, last)
        self.generic_visit(node)

    def _write(self, node: ast.Call, name: str, last: str) -> None:
        mode = ""
        if last == "open":
            if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                mode = str(node.args[1].value)
            for kw in node.keywords:
                if kw.arg == "mode" and isinstance(kw.value, ast.Constant):
                    mode = str(kw.value.value)
            if not set(mode) & set("wax"):
                return
        target: ast.AST = node
        if last == "open" and node.args:
            target = node.args[0]
        elif last in ("copy", "copyfile", "move", "symlink") and len(node.args) > 1:
            target = node.args[1]
        elif last in ("write_text", "write_bytes") and isinstance(node.func, ast.Attribute):
            target = node.func.value
        if _calls_any(
            target,
            frozenset(
                {"expanduser", "home", "expandvars", "getsitepackages", "getusersitepackages"}
            ),
        ) or any(
            s.lower().startswith(("/", "~")) or any(m in s.lower() for m in _OUTSIDE_MARKERS)
            for s in _strings(target)
        ):
            self.add("write-outside", node)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, (str, bytes)) and _is_blob(value):
            self.add("encoded-blob", node)
        # Paths and variable names are short single lines; templates and docs that mention
        # them are not reading them.
        if isinstance(value, str) and len(value) < 200 and "\n" not in value:
            lower = value.lower()
            if any(marker in lower for marker in _CREDENTIAL_MARKERS):
                self.add("credentials", node)


def scan_source(text: str, path: str) -> list[Signal]:
    """Every signal in one Python file (nothing for a file that does not parse)."""
    try:
        tree = ast.parse(text, filename=path)
    except (SyntaxError, ValueError):
        return []
    visitor = _Visitor(path)
    visitor.visit(tree)
    return visitor.found


ENTRY_FILES = ("setup.py", "hatch_build.py")


def _imported_names(path: Path) -> set[str]:
    """Dotted module names a file imports (absolute imports only)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError, OSError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _module_files(source: Path, dotted: str) -> Iterator[Path]:
    parts = dotted.split(".")
    for base in (source, source / "src"):
        yield base.joinpath(*parts).with_suffix(".py")
        yield base.joinpath(*parts, "__init__.py")


def _build_files(source: Path, backend_path: Sequence[str]) -> Iterator[Path]:
    """The code a build runs from the sdist: ``setup.py`` and ``hatch_build.py``, the modules of
    the sdist they import (transitively), and every file of an in-tree backend."""
    queue = [source / name for name in ENTRY_FILES]
    for entry in backend_path:
        queue.extend(sorted((source / entry).glob("**/*.py")))
    seen: set[Path] = set()
    while queue:
        path = queue.pop(0)
        if path in seen or path.is_symlink() or not path.is_file():
            continue
        seen.add(path)
        yield path
        for name in sorted(_imported_names(path)):
            queue.extend(_module_files(source, name))


def scan_tree(source: Path, backend_path: Sequence[str] = ()) -> list[Signal]:
    """Every signal in an unpacked sdist's build code."""
    found: list[Signal] = []
    for count, path in enumerate(_build_files(source, backend_path)):
        if count >= MAX_FILES:
            break
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        found.extend(scan_source(text, str(path.relative_to(source))))
    return found


def _action(rules: frozenset[str], allowed: bool) -> Literal["refuse", "warn", "report"]:
    if allowed:
        return "report"
    if any(combo <= rules for combo in REFUSED_COMBINATIONS):
        return "refuse"
    return "warn"


def scan_findings(
    name: NormalizedName, source: Path, policy: Policy, backend_path: Sequence[str] = ()
) -> list[Finding]:
    """One finding per signal; the action follows the trusted policy's ``[scan] allow`` list."""
    signals = scan_tree(source, backend_path)
    section = policy.section("scan")
    allow = section.get("allow", [])
    allowed = isinstance(allow, list) and name in {canonicalize_name(str(a)) for a in allow}
    rules = frozenset(s.rule for s in signals)
    action = _action(rules, allowed)
    findings = []
    for rule in sorted(rules):
        where = [f"{s.path}:{s.line}" for s in signals if s.rule == rule]
        shown = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
        combined = action == "refuse" and any(
            rule in c and c <= rules for c in REFUSED_COMBINATIONS
        )
        findings.append(
            Finding(
                gate="scan",
                project=name,
                message=f"build code {SIGNALS[rule]} ({shown})",
                action=action if (combined or action != "refuse") else "warn",
                rule=f"scan-{rule}",
                hint=(
                    "read the sdist's build code; if you trust it, add the project to "
                    f'[scan] allow = ["{name}"] in your policy'
                ),
                details=(("locations", ", ".join(where[:20])),),
            )
        )
    return findings
