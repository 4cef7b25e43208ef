"""The safepip policy: TOML files from the user, the site, ``--policy``/``SAFEPIP_POLICY``, and
the project directory, merged so that a project's own files can only tighten.

Precedence (later wins, for keys a source may set): site file, user file, ``SAFEPIP_POLICY``,
``--policy``. A project file (``safepip.toml`` or ``[tool.safepip]`` in ``pyproject.toml`` of the
current directory) is read last and may only add restrictions; each stage module reads its own
section (``policy.section("sandbox")``) and decides which of its keys are tightening-only."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from safepip.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["Policy", "PolicySource", "load_policy", "policy_locations"]


@dataclass(frozen=True, slots=True)
class PolicySource:
    path: Path
    trusted: bool  # False for files found in the project directory: they may only tighten


@dataclass(frozen=True, slots=True)
class Policy:
    """The merged trusted policy, and the project's (tighten-only) policy kept apart."""

    trusted: Mapping[str, Any] = field(default_factory=dict)
    project: Mapping[str, Any] = field(default_factory=dict)
    sources: tuple[PolicySource, ...] = ()

    def section(self, name: str) -> Mapping[str, Any]:
        value = self.trusted.get(name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"policy key [{name}] must be a table")
        return value

    def project_section(self, name: str) -> Mapping[str, Any]:
        value = self.project.get(name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"project policy key [{name}] must be a table")
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self.trusted.get(key, default)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data: dict[str, Any] = tomllib.load(f)
            return data
    except OSError as exc:
        raise ConfigError(
            f"cannot read policy file {path}: {exc.strerror}",
            hint="check the path given by --policy or SAFEPIP_POLICY",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"policy file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"policy file {path} is not UTF-8: {exc.reason} at byte {exc.start}",
            hint="TOML files are UTF-8",
        ) from None


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def policy_locations(
    environ: Mapping[str, str], explicit: str | None, cwd: Path
) -> list[PolicySource]:
    sources: list[PolicySource] = []
    for d in platformdirs.site_config_dir("safepip", multipath=True).split(os.pathsep):
        sources.append(PolicySource(Path(d) / "policy.toml", trusted=True))
    sources.append(
        PolicySource(Path(platformdirs.user_config_dir("safepip")) / "policy.toml", trusted=True)
    )
    if environ.get("SAFEPIP_POLICY"):
        sources.append(PolicySource(Path(environ["SAFEPIP_POLICY"]), trusted=True))
    if explicit:
        sources.append(PolicySource(Path(explicit), trusted=True))
    sources.append(PolicySource(cwd / "safepip.toml", trusted=False))
    sources.append(PolicySource(cwd / "pyproject.toml", trusted=False))
    return sources


def load_policy(
    environ: Mapping[str, str] | None = None,
    explicit: str | None = None,
    cwd: Path | None = None,
) -> Policy:
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    trusted: dict[str, Any] = {}
    project: dict[str, Any] = {}
    used: list[PolicySource] = []
    for source in policy_locations(environ, explicit, cwd):
        must_exist = source.trusted and str(source.path) in (
            explicit,
            environ.get("SAFEPIP_POLICY"),
        )
        if not source.path.is_file():
            if must_exist:
                raise ConfigError(
                    f"policy file {source.path} does not exist",
                    hint="check the path given by --policy or SAFEPIP_POLICY",
                )
            continue
        data = _read_toml(source.path)
        if source.path.name == "pyproject.toml":
            tool = data.get("tool", {})
            data = tool.get("safepip", {}) if isinstance(tool, dict) else {}
            if not data:
                continue
            if not isinstance(data, dict):
                raise ConfigError(f"[tool.safepip] in {source.path} must be a table")
        used.append(source)
        if source.trusted:
            trusted = _merge(trusted, data)
        else:
            project = _merge(project, data)
    return Policy(trusted=trusted, project=project, sources=tuple(used))
