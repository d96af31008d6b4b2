"""ecg_sweep.data.download against a local HTTP server (offline: 127.0.0.1 only)."""

from __future__ import annotations

import hashlib
import io
import random
import re
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ecg_sweep.data import download
from ecg_sweep.data.download import download_ptbxl
from ecg_sweep.errors import DataError

TOP = "ptb-xl-a-large-publicly-available-electrocardiography-dataset-1.0.3"


def dataset_files(seed: int = 0) -> dict[str, bytes]:
    rng = random.Random(seed)
    files = {
        "ptbxl_database.csv": b"ecg_id,patient_id,scp_codes,strat_fold,filename_lr\n"
        b"1,15709.0,\"{'NORM': 100.0}\",3,records100/00000/00001_lr\n",
        "scp_statements.csv": b",description,diagnostic,diagnostic_class\nNORM,normal ECG,1.0,NORM\n",
        "LICENSE.txt": b"Creative Commons Attribution 4.0\n",
    }
    for n in (1, 2, 3):
        files[f"records100/00000/0000{n}_lr.hea"] = f"0000{n}_lr 12 100 1000\n".encode()
        files[f"records100/00000/0000{n}_lr.dat"] = rng.randbytes(24_000)  # incompressible
    files["records500/00000/00001_hr.dat"] = rng.randbytes(8_000)
    return files


def make_zip(
    files: dict[str, bytes],
    *,
    top: str | None = TOP,
    sums: bool = True,
    wrong_hash: str | None = None,
    listed_but_absent: str | None = None,
    extra_members: dict[str, bytes] | None = None,
) -> bytes:
    """A PhysioNet-shaped zip: ``top/`` (or the root) holding ``files`` and SHA256SUMS.txt."""
    lines = []
    for rel, data in files.items():
        digest = hashlib.sha256(data).hexdigest()
        if rel == wrong_hash:
            digest = hashlib.sha256(data + b"tampered").hexdigest()
        lines.append(f"{digest}  {rel}\n")
    if listed_but_absent:
        lines.append(f"{'0' * 64}  {listed_but_absent}\n")
    prefix = f"{top}/" if top else ""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if top:
            archive.writestr(
                zipfile.ZipInfo(prefix), b""
            )  # explicit directory entry, like PhysioNet
        for rel, data in files.items():
            archive.writestr(prefix + rel, data)
        if sums:
            archive.writestr(prefix + "SHA256SUMS.txt", "".join(lines))
        for name, data in (extra_members or {}).items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


@dataclass
class Server:
    """What the handler serves and how it misbehaves; ``ranges`` records each request's Range."""

    url: str = ""
    payload: bytes = b""
    status: int | None = None  # answer every request with this error status
    fail_5xx: int = 0  # answer the first N requests with 503
    drops: int = 0  # on the first N requests, close the connection after drop_after body bytes
    drop_after: int = 0
    stalls: int = 0  # on the first N requests, stop sending after drop_after bytes and hang
    ignore_range: bool = False
    files: dict[str, bytes] = field(default_factory=dict)  # other paths served as they are
    paths: list[str] = field(default_factory=list)  # every requested path
    ranges: list[str | None] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def make_handler(state: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            state.paths.append(self.path)
            if self.path in state.files:
                body = state.files[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            requested = self.headers.get("Range")
            state.ranges.append(requested)
            if state.status is not None:
                self.send_error(state.status)
                return
            if state.fail_5xx > 0:
                state.fail_5xx -= 1
                self.send_error(503)
                return
            data, start = state.payload, 0
            if requested and not state.ignore_range:
                start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("Content-Type", "application/zip")
            self.end_headers()
            body = data[start:]
            if state.drops > 0:
                state.drops -= 1
                self.wfile.write(body[: state.drop_after])
                self.close_connection = True
                return
            if state.stalls > 0:
                state.stalls -= 1
                self.wfile.write(body[: state.drop_after])
                self.wfile.flush()
                state.release.wait(10)
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture(autouse=True)
def _offline_and_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(download, "_BACKOFF_S", 0.0)


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(payload=make_zip(dataset_files()))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/ptb-xl-1.0.3.zip"
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def sums_digest(payload: bytes) -> str:
    """SHA-256 of the SHA256SUMS.txt inside a served zip (what a pinned value would be)."""
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            for name in archive.namelist():
                if name.endswith("SHA256SUMS.txt"):
                    return hashlib.sha256(archive.read(name)).hexdigest()
    except zipfile.BadZipFile:
        pass
    return "0" * 64


def fetch(out: Path, server: Server, **kwargs: object) -> Path:
    """download_ptbxl against the test server, pinning the served zip's own checksum list."""
    kwargs = {
        "show_progress": False,
        "chunk_size": 4096,
        "timeout": 5.0,
        "sums_sha256": sums_digest(server.payload),
        **kwargs,
    }
    return download_ptbxl(out, server.url, **kwargs)


def assert_dataset(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        assert (root / rel).read_bytes() == data, rel
    assert (root / "SHA256SUMS.txt").is_file()


def assert_no_leftovers(parent: Path, *, part: bool = False) -> None:
    """Nothing but (optionally) the .part file beside ``out``: no zip, no extraction folder."""
    names = sorted(p.name for p in parent.iterdir() if p.name != "ptbxl")
    assert names == (["ptbxl.zip.part"] if part else [])


# ------------------------------------------------------------------------------------- success


def test_full_download_gives_verified_folder(tmp_path: Path, server: Server) -> None:
    out = tmp_path / "ptbxl"
    assert fetch(out, server) == out
    assert_dataset(out, dataset_files())
    assert sorted(p.name for p in out.iterdir()) == [
        "LICENSE.txt", "SHA256SUMS.txt", "ptbxl_database.csv", "records100", "records500",
        "scp_statements.csv",
    ]  # fmt: skip
    assert server.ranges == [None]
    assert_no_leftovers(tmp_path)


def test_progress_output_and_relative_out(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    root = fetch(Path("nested/ptbxl"), server, show_progress=True)
    assert root == tmp_path / "nested" / "ptbxl" and root.is_absolute()
    assert "verified" in capsys.readouterr().err
    assert_dataset(root, dataset_files())


def test_files_at_zip_root(tmp_path: Path, server: Server) -> None:
    server.payload = make_zip(dataset_files(), top=None)
    assert_dataset(fetch(tmp_path / "ptbxl", server), dataset_files())


def test_other_top_folder_name_and_empty_out(tmp_path: Path, server: Server) -> None:
    server.payload = make_zip(dataset_files(), top="ptb-xl-1.0.4")
    out = tmp_path / "ptbxl"
    out.mkdir()  # an empty folder is fine
    assert_dataset(fetch(out, server), dataset_files())


def test_dropped_connection_is_resumed(tmp_path: Path, server: Server) -> None:
    server.drops, server.drop_after = 1, len(server.payload) // 3
    out = fetch(tmp_path / "ptbxl", server, retries=1)
    assert_dataset(out, dataset_files())
    assert server.ranges == [None, f"bytes={len(server.payload) // 3}-"]
    assert_no_leftovers(tmp_path)


def test_read_timeout_is_retried_with_resume(tmp_path: Path, server: Server) -> None:
    server.stalls, server.drop_after = 1, 10_000
    out = fetch(tmp_path / "ptbxl", server, timeout=0.3, chunk_size=1000)
    assert_dataset(out, dataset_files())
    assert server.ranges == [None, "bytes=10000-"]


def test_existing_part_is_resumed(tmp_path: Path, server: Server) -> None:
    (tmp_path / "ptbxl.zip.part").write_bytes(server.payload[:5000])
    assert_dataset(fetch(tmp_path / "ptbxl", server), dataset_files())
    assert server.ranges == ["bytes=5000-"]
    assert_no_leftovers(tmp_path)


def test_server_ignoring_range_restarts_from_zero(tmp_path: Path, server: Server) -> None:
    server.ignore_range = True
    (tmp_path / "ptbxl.zip.part").write_bytes(b"x" * 5000)  # would corrupt the zip if appended to
    assert_dataset(fetch(tmp_path / "ptbxl", server), dataset_files())
    assert server.ranges == ["bytes=5000-"]


def test_complete_part_answered_416(tmp_path: Path, server: Server) -> None:
    (tmp_path / "ptbxl.zip.part").write_bytes(server.payload)
    assert_dataset(fetch(tmp_path / "ptbxl", server), dataset_files())
    assert server.ranges == [f"bytes={len(server.payload)}-"]


def test_oversized_part_is_restarted(tmp_path: Path, server: Server) -> None:
    (tmp_path / "ptbxl.zip.part").write_bytes(server.payload + b"junk")
    assert_dataset(fetch(tmp_path / "ptbxl", server), dataset_files())
    assert server.ranges == [f"bytes={len(server.payload) + 4}-", None]


def test_5xx_is_retried(tmp_path: Path, server: Server) -> None:
    server.fail_5xx = 2
    assert_dataset(fetch(tmp_path / "ptbxl", server, retries=2), dataset_files())
    assert server.ranges == [None, None, None]


def test_existing_complete_zip_is_used_without_network(tmp_path: Path, server: Server) -> None:
    (tmp_path / "ptbxl.zip").write_bytes(server.payload)
    assert_dataset(fetch(tmp_path / "ptbxl", server), dataset_files())
    assert server.ranges == []
    assert_no_leftovers(tmp_path)


def test_already_present_dataset_makes_no_request(tmp_path: Path, server: Server) -> None:
    out = tmp_path / "ptbxl"
    out.mkdir()
    (out / "SHA256SUMS.txt").write_text("")
    (out / "ptbxl_database.csv").write_text("ecg_id\n")
    assert fetch(out, server) == out
    assert server.ranges == []


# -------------------------------------------------------------------------------------- errors


def test_non_empty_foreign_out_raises(tmp_path: Path, server: Server) -> None:
    out = tmp_path / "ptbxl"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        fetch(out, server)
    assert server.ranges == []
    assert (out / "notes.txt").read_text() == "mine"


def test_retries_exhausted_keeps_part(tmp_path: Path, server: Server) -> None:
    server.drops, server.drop_after = 99, 3000
    with pytest.raises(DataError, match=re.escape(server.url)) as info:
        fetch(tmp_path / "ptbxl", server, retries=2)
    assert "3 attempt" in str(info.value) and "\n" not in str(info.value)
    assert len(server.ranges) == 3
    assert (tmp_path / "ptbxl.zip.part").stat().st_size == 9000  # 3 x 3000 bytes, appended
    assert not (tmp_path / "ptbxl").exists()
    # The next call resumes from the kept bytes and finishes.
    server.drops = 0
    assert_dataset(fetch(tmp_path / "ptbxl", server), dataset_files())
    assert server.ranges[-1] == "bytes=9000-"


@pytest.mark.parametrize("status", [404, 403])
def test_http_client_error_names_url(tmp_path: Path, server: Server, status: int) -> None:
    server.status = status
    with pytest.raises(DataError, match=rf"{re.escape(server.url)}: HTTP {status}"):
        fetch(tmp_path / "ptbxl", server)
    assert server.ranges == [None]  # not retried
    assert_no_leftovers(tmp_path)


def test_unreachable_host(tmp_path: Path) -> None:
    with socket.socket() as sock:  # find a free port, then close it: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ptb-xl.zip"
    with pytest.raises(DataError, match=rf"cannot reach {re.escape(url)}"):
        download_ptbxl(
            tmp_path / "ptbxl", url, show_progress=False, timeout=2.0, sums_sha256="0" * 64
        )
    assert not (tmp_path / "ptbxl").exists()


def test_checksum_mismatch_names_member(tmp_path: Path, server: Server) -> None:
    member = "records100/00000/00002_lr.dat"
    server.payload = make_zip(dataset_files(), wrong_hash=member)
    with pytest.raises(DataError, match=rf"checksum mismatch for {re.escape(member)}"):
        fetch(tmp_path / "ptbxl", server)
    assert not (tmp_path / "ptbxl").exists()
    assert_no_leftovers(tmp_path)  # zip deleted, extraction folder removed


def test_missing_sums_file(tmp_path: Path, server: Server) -> None:
    server.payload = make_zip(dataset_files(), sums=False)
    with pytest.raises(DataError, match="SHA256SUMS.txt"):
        fetch(tmp_path / "ptbxl", server)
    assert not (tmp_path / "ptbxl").exists()
    assert_no_leftovers(tmp_path)


def test_listed_file_missing_from_zip(tmp_path: Path, server: Server) -> None:
    server.payload = make_zip(dataset_files(), listed_but_absent="records500/00000/00001_hr.hea")
    with pytest.raises(
        DataError, match=r"missing from the archive, e\.g\. records500/00000/00001_hr\.hea"
    ):
        fetch(tmp_path / "ptbxl", server)
    assert not (tmp_path / "ptbxl").exists()


def test_not_a_zip(tmp_path: Path, server: Server) -> None:
    server.payload = b"<html>Please log in</html>"
    with pytest.raises(DataError, match="not a valid zip"):
        fetch(tmp_path / "ptbxl", server)
    assert not (tmp_path / "ptbxl").exists()
    assert_no_leftovers(tmp_path)


@pytest.mark.parametrize(
    "evil", [f"{TOP}/../evil.txt", f"{TOP}/records100/../../evil.txt", "/evil.txt"]
)
def test_zip_slip_member_refused(tmp_path: Path, server: Server, evil: str) -> None:
    work = tmp_path / "data"
    work.mkdir()
    server.payload = make_zip(dataset_files(), extra_members={evil: b"pwned"})
    with pytest.raises(DataError, match="unsafe member path"):
        fetch(work / "ptbxl", server)
    assert not (work / "ptbxl").exists()
    assert not list(tmp_path.rglob("evil.txt"))
    assert_no_leftovers(work)


def test_disk_error_while_downloading(tmp_path: Path, server: Server) -> None:
    (tmp_path / "ptbxl.zip.part").mkdir()  # cannot be opened for writing
    with pytest.raises(DataError, match=r"cannot write .*ptbxl\.zip\.part"):
        fetch(tmp_path / "ptbxl", server, retries=0)
    assert not (tmp_path / "ptbxl").exists()


def test_disk_error_while_extracting_keeps_zip(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(download.os, "rename", no_space)
    with pytest.raises(DataError, match="No space left on device"):
        fetch(tmp_path / "ptbxl", server)
    assert not (tmp_path / "ptbxl").exists()
    # The verified download is kept (only the extraction failed); the temp folder is gone.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ptbxl.zip"]
    monkeypatch.undo()
    monkeypatch.setattr(download, "_BACKOFF_S", 0.0)
    assert_dataset(fetch(tmp_path / "ptbxl", server), dataset_files())
    assert server.ranges == [None]


def test_errors_are_one_line(tmp_path: Path, server: Server) -> None:
    server.payload = make_zip(dataset_files(), wrong_hash="ptbxl_database.csv")
    with pytest.raises(DataError) as info:
        fetch(tmp_path / "ptbxl", server)
    assert "\n" not in str(info.value) and "ptbxl_database.csv" in str(info.value)


# ------------------------------------------- issue 12 item 8: authenticity and size of the archive


def _sums_file(payload: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        return next(archive.read(n) for n in archive.namelist() if n.endswith("SHA256SUMS.txt"))


def test_without_a_pin_the_published_checksum_list_decides(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing pinned: the list PhysioNet publishes beside the zip (fetched on its own) must be
    the one inside the archive; then the download goes through."""
    monkeypatch.setattr(download, "PTBXL_SUMS_SHA256", None)
    server.files["/SHA256SUMS.txt"] = _sums_file(server.payload)
    sums_url = server.url.rsplit("/", 1)[0] + "/SHA256SUMS.txt"
    out = download_ptbxl(tmp_path / "ptbxl", server.url, show_progress=False, sums_url=sums_url)
    assert_dataset(out, dataset_files())


def test_without_a_pin_a_list_other_than_the_published_one_is_refused(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mirror that re-lists a tampered file is caught by the published list."""
    monkeypatch.setattr(download, "PTBXL_SUMS_SHA256", None)
    server.files["/SHA256SUMS.txt"] = _sums_file(server.payload)
    files = dataset_files()
    files["records100/00000/00001_lr.dat"] = b"tampered" * 3000  # listed with its new hash
    server.payload = make_zip(files)
    sums_url = server.url.rsplit("/", 1)[0] + "/SHA256SUMS.txt"
    with pytest.raises(DataError, match=r"SHA256SUMS\.txt has SHA-256 .* not the expected"):
        download_ptbxl(tmp_path / "ptbxl", server.url, show_progress=False, sums_url=sums_url)
    assert not (tmp_path / "ptbxl").exists()
    assert_no_leftovers(tmp_path)


def test_unreachable_published_list_fails_closed_before_the_zip(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing pinned and the published list cannot be fetched: nothing is downloaded."""
    monkeypatch.setattr(download, "PTBXL_SUMS_SHA256", None)
    sums_url = server.url.rsplit("/", 1)[0] + "/missing/SHA256SUMS.txt"
    server.status = 404
    with pytest.raises(DataError, match=r"refusing to download .*--sums-sha256") as info:
        download_ptbxl(tmp_path / "ptbxl", server.url, show_progress=False, sums_url=sums_url)
    assert sums_url in str(info.value) and "\n" not in str(info.value)
    assert "/ptb-xl-1.0.3.zip" not in server.paths  # the zip was never requested
    assert list(tmp_path.iterdir()) == []


def test_pinned_value_is_used_by_default(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "PTBXL_SUMS_SHA256", sums_digest(server.payload))
    out = download_ptbxl(tmp_path / "ptbxl", server.url, show_progress=False, chunk_size=4096)
    assert_dataset(out, dataset_files())


def test_checksum_list_other_than_the_pinned_one_is_refused(tmp_path: Path, server: Server) -> None:
    """A mirror (or a man in the middle) cannot bring its own SHA256SUMS.txt: the pin decides."""
    files = dataset_files()
    files["records100/00000/00001_lr.dat"] = b"tampered" * 3000  # listed with its new hash
    server.payload = make_zip(files)
    pinned = sums_digest(make_zip(dataset_files()))
    with pytest.raises(DataError, match=r"SHA256SUMS\.txt has SHA-256 .* not the expected") as info:
        fetch(tmp_path / "ptbxl", server, sums_sha256=pinned)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "ptbxl").exists()
    assert_no_leftovers(tmp_path)  # zip deleted, nothing extracted


def test_bad_sums_sha256_value_is_one_line(tmp_path: Path, server: Server) -> None:
    with pytest.raises(DataError, match="--sums-sha256 must be 64 hexadecimal digits"):
        fetch(tmp_path / "ptbxl", server, sums_sha256="abc")
    assert server.ranges == []


def test_member_not_listed_in_sums_is_refused(tmp_path: Path, server: Server) -> None:
    """Before the fix: extracted unchecked, and the command still said "verified"."""
    server.payload = make_zip(
        dataset_files(), extra_members={f"{TOP}/records100/00000/evil.py": b"import os\n"}
    )
    with pytest.raises(
        DataError, match=r"not listed in SHA256SUMS\.txt .* records100/00000/evil\.py"
    ):
        fetch(tmp_path / "ptbxl", server)
    assert not (tmp_path / "ptbxl").exists()
    assert not list(tmp_path.rglob("evil.py"))
    assert_no_leftovers(tmp_path)


def test_archive_declaring_more_than_the_cap_is_refused_before_writing(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = []
    real_open = open

    def spy_open(file, mode="r", *args, **kwargs):  # noqa: ANN001
        if "w" in mode and ".extracting-" in str(file):
            written.append(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy_open)
    monkeypatch.setattr(download, "MAX_EXTRACTED_BYTES", 50_000)  # the fixture holds ~105 KB
    with pytest.raises(DataError, match=r"would extract to [\d,]+ bytes, more than the 50,000"):
        fetch(tmp_path / "ptbxl", server)
    assert written == []
    assert not (tmp_path / "ptbxl").exists()
    assert_no_leftovers(tmp_path)


def test_zip_bomb_is_refused(tmp_path: Path, server: Server) -> None:
    """The reported case at 1/100 scale: a small zip that expands 1000-fold, listed and all."""
    files = dataset_files()
    files["records500/00000/00002_hr.dat"] = bytes(3_000_000)  # deflates to ~3 KB
    server.payload = make_zip(files)
    assert len(server.payload) < 120_000
    with pytest.raises(DataError, match="zip bomb"):
        fetch(tmp_path / "ptbxl", server, max_bytes=1_000_000)
    assert not (tmp_path / "ptbxl").exists()
    assert_no_leftovers(tmp_path)


def test_cli_without_a_pin_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import run_cli

    if download.PTBXL_SUMS_SHA256 is not None:
        pytest.skip("a checksum list is pinned in this version")
    r = run_cli(
        "data", "download", "--out", str(tmp_path / "ptbxl"), "--url", "http://127.0.0.1:9/x.zip"
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refusing to download")
    assert "--sums-sha256" in lines[0]
    assert list(tmp_path.iterdir()) == []
