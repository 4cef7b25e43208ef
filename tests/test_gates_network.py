"""The gates at their defaults refuse nothing in common stacks from the real default index."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.test_advisories import SNAPSHOT


@pytest.mark.network
def test_default_gates_refuse_nothing_in_web_and_scientific_stacks() -> None:
    osv = ["--osv", str(SNAPSHOT)] if SNAPSHOT.is_file() else []
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/default_gates_stacks.py"), *osv],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if " stack: " in line]
    assert len(lines) == 2 and all("0 refused" in line for line in lines), result.stdout
