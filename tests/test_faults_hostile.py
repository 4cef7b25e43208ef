"""Hostile data: oversized and malformed pages, hashes and metadata, zip bombs, and wheels whose
members try to escape. Each is refused with a reason (or, where a later gate owns the refusal,
never escapes the target), with memory bounded."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
import tracemalloc
import uuid
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from safepip.cli import main
from safepip.errors import InvalidIndexPage, SafepipError
from safepip.fetch import FileStore, MetadataFetcher
from safepip.index import MAX_PAGE_BYTES, parse_html_page, parse_json_page
from tests.faultserver import reply
from tests.kit import Index, IndexServer, make_wheel, metadata_text, tree_digest

PAGE = "https://index.invalid/simple/demo/"
NAME = canonicalize_name("demo")


def _site(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def _json_page(hashes: object) -> bytes:
    entry = {"filename": "demo-1.0-py3-none-any.whl", "url": "demo.whl", "hashes": hashes}
    return json.dumps({"meta": {"api-version": "1.1"}, "files": [entry]}).encode()


@pytest.mark.parametrize(
    "hashes",
    [
        {"sha256": "abc"},  # too short
        {"sha256": "z" * 64},  # not hex
        {"sha256": "a" * 65},  # too long
        {"sha512": "a" * 64},  # a sha256's length under sha512
        {"sha256": 5},  # wrong type
        "sha256=abc",  # not an object
    ],
)
def test_malformed_hash_fields_are_refused(hashes: object) -> None:
    with pytest.raises(InvalidIndexPage) as caught:
        parse_json_page(_json_page(hashes), PAGE, NAME, PAGE)
    assert "hash" in caught.value.message


@pytest.mark.parametrize("fragment", ["#sha256=abc", "#sha256=" + "g" * 64, "#md5=" + "a" * 40])
def test_malformed_hash_fragments_are_refused(fragment: str) -> None:
    body = f'<a href="demo-1.0-py3-none-any.whl{fragment}">x</a>'.encode()
    with pytest.raises(InvalidIndexPage):
        parse_html_page(body, PAGE, NAME, PAGE)


def test_unknown_hash_algorithm_alone_verifies_nothing_and_is_ignored() -> None:
    """As pip does: an algorithm safepip cannot compute neither passes nor fails a file."""
    page = parse_json_page(_json_page({"blake2q": "00"}), PAGE, NAME, PAGE)
    assert not page.files[0].hashes


def test_deeply_nested_json_page_is_refused() -> None:
    with pytest.raises(InvalidIndexPage):
        parse_json_page(b"[" * 500_000 + b"]" * 500_000, PAGE, NAME, PAGE)


def _wheel_file(blob: bytes, tmp_path: Path) -> Path:
    path = tmp_path / "demo-1.0-py3-none-any.whl"
    path.write_bytes(blob)
    return path


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_metadata_zip_bomb_is_refused_with_memory_bounded(tmp_path: Path) -> None:
    bomb = _zip({"demo-1.0.dist-info/METADATA": b"\0" * (256 * 1024 * 1024)})
    assert len(bomb) < 1024 * 1024  # 256 MiB of METADATA in well under 1 MiB
    fetcher = MetadataFetcher(None, FileStore(tmp_path / "store"))  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        with pytest.raises(SafepipError) as caught:
            fetcher._from_zip_path(_wheel_file(bomb, tmp_path), "demo-1.0-py3-none-any.whl")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "too large" in caught.value.message
    assert peak < 64 * 1024 * 1024


def test_metadata_bomb_with_a_lying_size_is_read_only_to_the_bound(tmp_path: Path) -> None:
    """The central directory claims 10 bytes; the stream inflates to 256 MiB."""
    blob = bytearray(_zip({"demo-1.0.dist-info/METADATA": b"\0" * (256 * 1024 * 1024)}))
    real = (256 * 1024 * 1024).to_bytes(4, "little")
    lie = (10).to_bytes(4, "little")
    blob = bytearray(bytes(blob).replace(real, lie))
    fetcher = MetadataFetcher(None, FileStore(tmp_path / "store"))  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        try:
            data = fetcher._from_zip_path(
                _wheel_file(bytes(blob), tmp_path), "demo-1.0-py3-none-any.whl"
            )
            assert len(data) <= 10
        except SafepipError:
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024


def test_two_metadata_files_are_refused(tmp_path: Path) -> None:
    blob = _zip({"a-1.0.dist-info/METADATA": b"Name: a\n", "b-1.0.dist-info/METADATA": b"x"})
    fetcher = MetadataFetcher(None, FileStore(tmp_path / "store"))  # type: ignore[arg-type]
    with pytest.raises(SafepipError, match="exactly one"):
        fetcher._from_zip_path(_wheel_file(blob, tmp_path), "demo-1.0-py3-none-any.whl")


# End to end: a target venv, a local index, safepip in-process.


def _install(
    venv: Path, url: str, capfd: pytest.CaptureFixture[str], tmp: Path, *args: str
) -> tuple[int, str, str]:
    cache = tmp / f"cache-{uuid.uuid4().hex[:8]}"
    code = main(
        ["--python", str(venv / "bin/python"), "install", "--cache-dir", str(cache), "-i", url,
         *args]
    )  # fmt: skip
    out, err = capfd.readouterr()
    return code, out, err


def _refused_cleanly(code: int, err: str, *words: str) -> None:
    assert code in (1, 3), err
    assert "Traceback" not in err and "hint:" in err, err
    for word in words:
        assert word in err, err


def test_huge_pep658_metadata_is_refused(
    index: Index,
    server: IndexServer,
    target_venv: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    index.pep658 = True
    index.wheel("demo", "1.0")
    server.hooks["/files/demo-1.0-py3-none-any.whl.metadata"] = reply(
        metadata_text("demo", "1.0", summary="x" * (17 * 1024 * 1024)).encode(), "text/plain"
    )
    before = tree_digest(target_venv)
    code, _, err = _install(target_venv, server.simple_url, capfd, tmp_path, "demo")
    _refused_cleanly(code, err, "metadata")
    assert tree_digest(target_venv) == before


@pytest.mark.parametrize(
    "metadata",
    [
        "Metadata-Version: 2.1\nName: demo\n\n",  # no version
        "Metadata-Version: 2.1\nName: demo\nVersion: not a version!\n\n",
        "Metadata-Version: 2.1\nName: other\nVersion: 1.0\n\n",  # another project
        "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Dist: ][ nonsense\n\n",
        "\xff\xfe garbage",
    ],
)
def test_malformed_wheel_metadata_is_refused(
    index: Index,
    server: IndexServer,
    target_venv: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    metadata: str,
) -> None:
    index.wheel("demo", "1.0", metadata_override=metadata)
    before = tree_digest(target_venv)
    code, _, err = _install(target_venv, server.simple_url, capfd, tmp_path, "demo")
    _refused_cleanly(code, err)
    assert tree_digest(target_venv) == before


def _hostile_wheel(kind: str, marker: str, outside: Path) -> tuple[str, bytes]:
    """``evil 1.0``, a valid wheel plus one hostile member."""
    filename, blob = make_wheel("evil", "1.0")
    buf = io.BytesIO(blob)
    with zipfile.ZipFile(buf, "a") as zf:
        if kind == "dotdot":
            zf.writestr(f"../../../{marker}.py", b"ESCAPED = True\n")
        elif kind == "absolute":
            zf.writestr(zipfile.ZipInfo(str(outside / f"{marker}.py")), b"ESCAPED = True\n")
        elif kind == "duplicate":
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                zf.writestr("evil/__init__.py", b"SECOND = True\n")
        elif kind == "symlink":
            info = zipfile.ZipInfo(f"evil/{marker}")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, str(outside / marker).encode())
    return filename, buf.getvalue()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("dotdot", "unsafe-path"),
        ("absolute", "unsafe-path"),
        ("duplicate", "appears 2 times"),
        ("symlink", "special-file"),
        ("record", "record-mismatch"),
    ],
)
def test_hostile_wheel_members_are_refused_before_pip(
    index: Index,
    server: IndexServer,
    target_venv: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    kind: str,
    reason: str,
) -> None:
    """Members that escape (``..``, absolute paths), duplicates, symlinks and a RECORD that lies
    reach the wheel-content gate's refusal before pip runs: nothing installed, the innocent
    wheel beside it included, and nothing written outside the target."""
    marker = f"escape_{uuid.uuid4().hex[:8]}"
    outside = tmp_path / "outside"
    outside.mkdir()
    index.wheel("innocent", "1.0")
    if kind == "record":
        index.wheel("evil", "1.0", record_override="evil/__init__.py,sha256=AAAA,1\n")
    else:
        index.add(_hostile_wheel(kind, marker, outside), project="evil")
    before = tree_digest(target_venv)
    code, _, err = _install(target_venv, server.simple_url, capfd, tmp_path, "innocent", "evil")
    _refused_cleanly(code, err, reason, "evil-1.0-py3-none-any.whl")
    assert code == 3
    assert tree_digest(target_venv) == before
    assert not any(tmp_path.rglob(f"{marker}*"))


# A 50 MB index page: read and parsed with memory bounded; past the bound, refused unread.


def _padded_page(index: Index, server: IndexServer, size: int) -> bytes:
    page = json.loads(index.json_page("demo", server.url))
    page["padding"] = " " * size
    return json.dumps(page).encode()


@pytest.mark.parametrize("megabytes", [50, 200])
def test_huge_index_pages_memory_bounded(
    index: Index, server: IndexServer, target_venv: Path, tmp_path: Path, megabytes: int
) -> None:
    index.wheel("demo", "1.0")
    body = _padded_page(index, server, megabytes * 1024 * 1024)
    server.hooks["/simple/demo/"] = reply(body, "application/vnd.pypi.simple.v1+json")
    # VmHWM, not ru_maxrss: the latter keeps the high-water mark of the forking test process.
    script = (
        "import sys\n"
        "from safepip.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print('maxrss', hwm.split()[1], file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, "--python", str(target_venv / "bin/python"), "install",
         "--dry-run", "--cache-dir", str(tmp_path / "cache"), "-i", server.simple_url, "demo"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    rss_mib = int(proc.stderr.rsplit("maxrss", 1)[1].split()[0]) / 1024
    assert "Traceback" not in proc.stderr
    if megabytes * 1024 * 1024 > MAX_PAGE_BYTES:
        assert proc.returncode == 1 and "page-too-large" in proc.stderr, proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
    # The body, its parse and the interpreter: a bounded multiple of the page, and of the
    # 64 MiB bound for a page past it.
    bound = 4 * min(megabytes, MAX_PAGE_BYTES // (1024 * 1024)) + 150
    assert rss_mib < bound, f"{rss_mib:.0f} MiB for a {megabytes} MB page"
    print(f"{megabytes} MB page: exit {proc.returncode}, max RSS {rss_mib:.0f} MiB")
