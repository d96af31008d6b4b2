"""Download PTB-XL from PhysioNet, verify every file against its SHA-256, extract atomically.

This is the only module of ecg-sweep that touches the network, and only when called.

On disk, for ``out = data/ptbxl``::

    data/ptbxl.zip.part        while downloading (kept after a network failure: the next call resumes)
    data/ptbxl.zip             once complete (deleted after a successful extraction, or if it fails
                               verification)
    data/.ptbxl.extracting-*/  temporary extraction folder, renamed to ``data/ptbxl`` once verified
    data/ptbxl/                the dataset root (ptbxl_database.csv, records100/, SHA256SUMS.txt, ...)
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ecg_sweep import __version__
from ecg_sweep.errors import DataError, clip

__all__ = [
    "PTBXL_URL",
    "PTBXL_SUMS_URL",
    "PTBXL_SUMS_SHA256",
    "MAX_EXTRACTED_BYTES",
    "download_ptbxl",
]

log = logging.getLogger(__name__)

PTBXL_URL = "https://physionet.org/static/published-projects/ptb-xl/ptb-xl-a-large-publicly-available-electrocardiography-dataset-1.0.3.zip"

SUMS_FILE = "SHA256SUMS.txt"
DATABASE_CSV = "ptbxl_database.csv"

# The checksum list PhysioNet publishes beside the zip, fetched on its own over HTTPS from
# physionet.org: the list inside the archive must be byte-identical to it. That turns "the files
# match the list inside the zip" (integrity) into "the files are the ones PhysioNet published"
# (authenticity, through PhysioNet's TLS certificate), whatever mirror `--url` names.
PTBXL_SUMS_URL = "https://physionet.org/files/ptb-xl/1.0.3/SHA256SUMS.txt"
# SHA-256 of PTB-XL 1.0.3's SHA256SUMS.txt, pinned in the code: when set it decides without any
# request to PTBXL_SUMS_URL. NOT SET YET: this was written on machines without access to
# physionet.org and the value could not be found in any other source (a guessed hash would be
# worse than none). A maintainer fills it in from `sha256sum` of PTBXL_SUMS_URL, checked against
# a second source. Users can pin it themselves with `--sums-sha256`.
PTBXL_SUMS_SHA256: str | None = None
# 1.0.3 extracts to about 3.2 GB (21,799 records: 120,000-byte .dat at 500 Hz, 24,000 at 100 Hz,
# ~0.7 KB headers, ~15 MB of CSVs and lists); a zip that declares or writes more is refused.
MAX_EXTRACTED_BYTES = 4 * 1024**3
# 4 files per record + 6 others = 87,202 members in 1.0.3.
MAX_MEMBERS = 100_000
# SHA256SUMS.txt of 1.0.3 is about 8 MB (one line per file); read no more than this into memory.
MAX_SUMS_BYTES = 64 * 1024**2
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

_USER_AGENT = f"ecg-sweep/{__version__} (+urllib)"
# 408/429 and every 5xx are worth retrying; other 4xx (404, 403, 401) will not fix themselves.
_TRANSIENT_HTTP = frozenset({408, 429})
# Seconds before retry k (k = 0, 1, ...) is _BACKOFF_S * 2**k, capped; tests set it to 0.
_BACKOFF_S = 1.0
_BACKOFF_MAX_S = 30.0
_SUMS_LINE = re.compile(r"([0-9A-Fa-f]{64})\s+\*?(.+)")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class _Transient(Exception):
    """A network failure worth retrying; the ``.part`` file keeps whatever arrived."""


def download_ptbxl(
    out: str | Path,
    url: str = PTBXL_URL,
    *,
    show_progress: bool = True,
    chunk_size: int = 1 << 20,
    retries: int = 3,
    timeout: float = 60.0,
    sums_sha256: str | None = None,
    sums_url: str = PTBXL_SUMS_URL,
    max_bytes: int | None = None,
) -> Path:
    """Download PTB-XL into ``out``, verify it against its ``SHA256SUMS.txt`` and return ``out``.

    The zip is streamed to ``<out>.zip.part`` beside ``out``; an interrupted download (this call or
    an earlier one) resumes with an HTTP ``Range`` request. Transient failures (connection reset,
    timeout, HTTP 5xx) are retried up to ``retries`` times with exponential backoff. The complete
    zip is renamed to ``<out>.zip``, then extracted into a temporary sibling folder while every
    member listed in ``SHA256SUMS.txt`` is hashed; only when all hashes match and no listed file is
    missing is the folder renamed to ``out``, so ``out`` is never half-extracted. The zip is deleted
    afterwards (and also when it fails verification, so the next call downloads it afresh).

    Before anything is extracted, ``SHA256SUMS.txt`` itself must be the published one: its SHA-256
    must be ``sums_sha256``, else the pinned :data:`PTBXL_SUMS_SHA256`, else that of the list
    PhysioNet publishes at ``sums_url`` (fetched over HTTPS before the zip); every file of the
    archive must
    be listed in it (an unlisted file is refused, not extracted unchecked), and the archive may
    not hold more than ``max_bytes`` (:data:`MAX_EXTRACTED_BYTES`) or :data:`MAX_MEMBERS` files.

    If ``out`` already holds a dataset (``SHA256SUMS.txt`` and ``ptbxl_database.csv``) it is
    returned at once, without any network access.

    Args:
        out: Folder that becomes the dataset root (must be absent, empty, or already a dataset).
        url: Zip to download; the default is PhysioNet's PTB-XL v1.0.3. The archive may hold the
            files at its root or in one top-level folder.
        show_progress: Show rich progress bars (bytes, rate, ETA) and status lines on stderr;
            when False, status goes to the ``logging`` module instead.
        chunk_size: Bytes per read from the network and from zip members.
        retries: How many times to retry after a transient failure (0: try once).
        timeout: Socket timeout in seconds, for connecting and for each read.
        sums_sha256: Expected SHA-256 (hex) of the archive's ``SHA256SUMS.txt``; default the
            pinned :data:`PTBXL_SUMS_SHA256`, else the digest of the list at ``sums_url``.
        sums_url: Where the published checksum list is fetched when nothing is pinned; if it
            cannot be fetched, nothing is downloaded (fails closed, naming ``--sums-sha256``).
        max_bytes: Most bytes the archive may extract to; default :data:`MAX_EXTRACTED_BYTES`.

    Returns:
        The dataset root: ``out`` as an absolute path.

    Raises:
        DataError: One line naming the URL or file: HTTP 403/404, unreachable host, retries
            exhausted, not a zip, a checksum mismatch, a missing ``SHA256SUMS.txt`` or listed file,
            a ``SHA256SUMS.txt`` that is not the published one, an unlisted file, an archive larger
            than the cap, an unsafe member path, ``out`` occupied by something else, an
            unreachable published checksum list, or a disk error.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    limit = MAX_EXTRACTED_BYTES if max_bytes is None else max_bytes
    out = Path(os.path.abspath(os.path.expanduser(os.fspath(out))))
    if not out.name:
        raise DataError(f"cannot download PTB-XL into {out}: choose a folder, not a drive root")
    console = Console(stderr=True) if show_progress else None
    say: Callable[[str], None] = (
        (lambda message: console.print(message, markup=False)) if console is not None else log.info
    )

    if out.exists():
        if _is_dataset(out):
            say(f"PTB-XL already present at {out}; nothing downloaded.")
            return out
        if not out.is_dir():
            raise DataError(f"cannot download PTB-XL into {out}: it exists and is not a folder")
        if any(out.iterdir()):
            raise DataError(
                f"cannot download PTB-XL into {out}: the folder is not empty and holds no "
                f"PTB-XL dataset ({SUMS_FILE} and {DATABASE_CSV}); choose another folder"
            )

    # Decided before the zip is requested or any disk is used.
    expected_sums = _expected_sums(sums_sha256, url, sums_url, timeout, retries, say)
    zip_path = out.with_name(out.name + ".zip")
    part_path = out.with_name(out.name + ".zip.part")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create {out.parent}: {e.strerror or e}") from None

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not show_progress,
    ) as progress:
        if zip_path.is_file():
            say(f"Using the already downloaded {zip_path}.")
        else:
            _download(url, part_path, progress, say, chunk_size, retries, timeout)
            try:
                os.replace(part_path, zip_path)
            except OSError as e:
                raise DataError(
                    f"cannot rename {part_path} to {zip_path}: {e.strerror or e}"
                ) from None
        _extract_verified(zip_path, out, progress, chunk_size, expected_sums, limit)

    with contextlib.suppress(OSError):
        zip_path.unlink()
    say(f"PTB-XL verified and extracted to {out}")
    return out


def _expected_sums(
    given: str | None,
    url: str,
    sums_url: str,
    timeout: float,
    retries: int,
    say: Callable[[str], None],
) -> str:
    """The SHA-256 the archive's SHA256SUMS.txt must have: given, pinned, or published."""
    value = given if given is not None else PTBXL_SUMS_SHA256
    if value is None:
        data = _fetch_published_sums(sums_url, url, timeout, retries)
        value = hashlib.sha256(data).hexdigest()
        say(f"{SUMS_FILE} published at {sums_url}: SHA-256 {value}")
    value = value.strip().lower()
    if not _SHA256_HEX.fullmatch(value):
        raise DataError(f"--sums-sha256 must be 64 hexadecimal digits, not {clip(value, 80)}")
    return value


def _fetch_published_sums(sums_url: str, url: str, timeout: float, retries: int) -> bytes:
    """The checksum list published at ``sums_url`` (at most MAX_SUMS_BYTES), retried like the zip."""
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(_BACKOFF_S * 2 ** (attempt - 1), _BACKOFF_MAX_S))
        request = urllib.request.Request(sums_url, headers={"User-Agent": _USER_AGENT})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                data = response.read(MAX_SUMS_BYTES + 1)
            if len(data) > MAX_SUMS_BYTES:
                last = f"larger than {MAX_SUMS_BYTES} bytes"
                break
            return data
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
            if e.code < 500 and e.code not in _TRANSIENT_HTTP:
                break
        except (urllib.error.URLError, OSError) as e:
            last = _describe(getattr(e, "reason", e))
    raise DataError(
        f"refusing to download {clip(url, 120)}: cannot fetch the published checksum list "
        f"{clip(sums_url, 120)} ({last}) to authenticate it; retry, or pass --sums-sha256 "
        f"<sha256 of PTB-XL 1.0.3's {SUMS_FILE} from a source you trust>"
    )


def _is_dataset(folder: Path) -> bool:
    return (folder / SUMS_FILE).is_file() and (folder / DATABASE_CSV).is_file()


# --------------------------------------------------------------------------------------- download


def _download(
    url: str,
    part: Path,
    progress: Progress,
    say: Callable[[str], None],
    chunk_size: int,
    retries: int,
    timeout: float,
) -> None:
    """Fill ``part`` with the whole body of ``url``, resuming and retrying as needed."""
    task = progress.add_task("Downloading", total=None)
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, part, progress, task, say, chunk_size, timeout)
            return
        except _Transient as e:
            if attempt == retries:
                kept = (
                    f"; partial download kept in {part}, run again to resume"
                    if part.exists()
                    else ""
                )
                raise DataError(
                    f"download of {url} failed after {retries + 1} attempt(s): {e}{kept}"
                ) from None
            delay = min(_BACKOFF_S * 2**attempt, _BACKOFF_MAX_S)
            say(f"Download interrupted ({e}); retry {attempt + 1}/{retries} in {delay:g} s")
            time.sleep(delay)


def _fetch_once(
    url: str,
    part: Path,
    progress: Progress,
    task: TaskID,
    say: Callable[[str], None],
    chunk_size: int,
    timeout: float,
) -> None:
    """One HTTP request appending to ``part``; raises :class:`_Transient` for retryable failures."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        with contextlib.closing(e):
            if e.code == 416 and offset:
                # Range not satisfiable: the .part already holds the whole file, unless the
                # server says the file is a different size (then the .part is stale).
                total = _parse_content_range(e.headers.get("Content-Range", ""))[2]
                if total is None or total == offset:
                    return
                _unlink(part)
                raise _Transient(
                    f"{part.name} has {offset} bytes but the file has {total}; restarting"
                ) from None
            if e.code in _TRANSIENT_HTTP or e.code >= 500:
                raise _Transient(f"HTTP {e.code} {e.reason}") from None
            raise DataError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, (TimeoutError, ConnectionResetError, ConnectionAbortedError)):
            raise _Transient(_describe(reason)) from None
        raise DataError(f"cannot reach {url}: {_describe(reason)}") from None
    except (ConnectionError, TimeoutError, http.client.HTTPException) as e:
        # Raised while reading the status line (e.g. RemoteDisconnected); urllib does not wrap it.
        raise _Transient(_describe(e)) from None

    with response:
        status = response.status
        if status == 206:
            start, _, total = _parse_content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                _unlink(part)
                raise _Transient(f"server resumed at byte {start} instead of {offset}; restarting")
            mode = "ab"
        elif status == 200:
            if offset:
                say("The server ignored the resume request; restarting the download from zero.")
                offset = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        else:
            raise DataError(f"cannot download {url}: unexpected HTTP {status} {response.reason}")

        progress.update(task, total=total, completed=offset)
        received = offset
        try:
            sink = open(part, mode)  # noqa: SIM115 (write errors are reported separately below)
        except OSError as e:
            raise DataError(f"cannot write {part}: {e.strerror or e}") from None
        with sink:
            while True:
                try:
                    chunk = response.read(chunk_size)
                except (OSError, http.client.HTTPException) as e:
                    raise _Transient(_describe(e)) from None
                if not chunk:
                    break
                try:
                    sink.write(chunk)
                except OSError as e:
                    raise DataError(f"cannot write {part}: {e.strerror or e}") from None
                received += len(chunk)
                progress.update(task, completed=received)
    if total is not None and received < total:
        raise _Transient(f"connection closed after {received} of {total} bytes")


def _parse_content_range(value: str) -> tuple[int | None, int | None, int | None]:
    """``"bytes 10-99/100"`` -> (10, 99, 100); ``"bytes */100"`` -> (None, None, 100)."""
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match:
        first, last, total = match.groups()
        return int(first), int(last), None if total == "*" else int(total)
    match = re.fullmatch(r"bytes\s+\*/(\d+)", value.strip())
    return None, None, int(match.group(1)) if match else None


def _describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    if isinstance(error, TimeoutError):
        return "timed out"
    text = getattr(error, "strerror", None) or str(error)
    return text or type(error).__name__


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


# ------------------------------------------------------------------------------ verify + extract


def _extract_verified(
    zip_path: Path,
    out: Path,
    progress: Progress,
    chunk_size: int,
    expected_sums: str,
    max_bytes: int,
) -> None:
    """Extract ``zip_path`` to ``out`` via a temporary sibling, hashing every member on the way.

    A zip that fails verification is deleted; a disk error keeps it (the bytes are fine).
    """
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members, sums = _plan(archive, zip_path, expected_sums, max_bytes)
            _check_free_space(out.parent, sum(i.file_size for i in members.values()))
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.extracting-", dir=out.parent))
            try:
                _extract_members(
                    archive, members, sums, tmp, zip_path, progress, chunk_size, max_bytes
                )
                if out.is_dir():
                    out.rmdir()  # empty (checked by the caller); rename() needs it gone on Windows
                os.rename(tmp, out)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except _CorruptArchive as e:
        _unlink(zip_path)
        raise DataError(str(e)) from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        _unlink(zip_path)
        raise DataError(f"{zip_path} is not a valid zip archive ({e}); deleted it") from None
    except OSError as e:
        where = e.filename or zip_path
        raise DataError(f"cannot extract {zip_path} to {out}: {where}: {e.strerror or e}") from None


class _CorruptArchive(Exception):
    """The archive is readable but its content fails verification."""


def _plan(
    archive: zipfile.ZipFile, zip_path: Path, expected_sums: str, max_bytes: int
) -> tuple[dict[str, zipfile.ZipInfo], dict[str, str]]:
    """Map dataset-relative paths to members, and parse ``SHA256SUMS.txt``; check before writing.

    Refuses (before anything is written): unsafe paths, too many members or bytes, a checksum
    list that is not the pinned one, listed files that are missing, and files that are not listed.
    """
    infos = [i for i in archive.infolist() if not i.filename.startswith("__MACOSX/")]
    if len(infos) > MAX_MEMBERS:
        raise _CorruptArchive(
            f"{zip_path} holds {len(infos):,} files, more than the {MAX_MEMBERS:,} of PTB-XL; "
            "deleted it"
        )
    for info in infos:
        if not _is_safe_member(info.filename):
            raise _CorruptArchive(
                f"{zip_path}: refusing unsafe member path {clip(info.filename)} (absolute or "
                "'..'); deleted it"
            )
    names = {i.filename for i in infos}
    tops = {name.split("/", 1)[0] for name in names}
    if SUMS_FILE in names:
        prefix = ""
    elif len(tops) == 1 and all("/" in name for name in names):
        prefix = tops.pop() + "/"
    else:
        prefix = None
    if prefix is None or prefix + SUMS_FILE not in names:
        where = f"in {prefix}" if prefix else "at its root or in a single top-level folder"
        raise _CorruptArchive(f"{zip_path} has no {SUMS_FILE} {where}; deleted it")

    members = {
        str(PurePosixPath(info.filename[len(prefix) :])): info
        for info in infos
        if not info.is_dir() and info.filename.startswith(prefix)
    }
    declared = sum(i.file_size for i in members.values())
    if declared > max_bytes:
        raise _CorruptArchive(
            f"{zip_path} would extract to {declared:,} bytes, more than the {max_bytes:,} "
            "PTB-XL needs (a zip bomb or not PTB-XL); deleted it"
        )
    sums_info = archive.getinfo(prefix + SUMS_FILE)
    if sums_info.file_size > MAX_SUMS_BYTES:
        raise _CorruptArchive(
            f"{zip_path}: {SUMS_FILE} is {sums_info.file_size:,} bytes, not PTB-XL's; deleted it"
        )
    sums_bytes = archive.read(sums_info)
    actual = hashlib.sha256(sums_bytes).hexdigest()
    if actual != expected_sums:
        raise _CorruptArchive(
            f"{zip_path}: its {SUMS_FILE} has SHA-256 {actual[:16]}..., not the expected "
            f"{expected_sums[:16]}... of PTB-XL 1.0.3 (another release, or tampered with); "
            "deleted it"
        )
    sums = _parse_sums(sums_bytes, zip_path)
    missing = sorted(set(sums) - set(members))
    if missing:
        raise _CorruptArchive(
            f"{zip_path}: {len(missing)} file(s) listed in {SUMS_FILE} are missing from the "
            f"archive, e.g. {clip(missing[0], bare=True)}; deleted it"
        )
    unlisted = sorted(set(members) - set(sums) - {SUMS_FILE})
    if unlisted:
        raise _CorruptArchive(
            f"{zip_path}: {len(unlisted)} file(s) in the archive are not listed in {SUMS_FILE} "
            f"and cannot be verified, e.g. {clip(unlisted[0], bare=True)}; deleted it"
        )
    if DATABASE_CSV not in members:
        raise _CorruptArchive(f"{zip_path} holds no {DATABASE_CSV}: not PTB-XL; deleted it")
    return members, sums


def _check_free_space(folder: Path, needed: int) -> None:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # unknown: extraction reports ENOSPC itself
    if free < needed:
        raise DataError(
            f"cannot extract PTB-XL into {folder}: it needs {needed / 1e9:,.2f} GB and only "
            f"{free / 1e9:,.2f} GB are free"
        )


def _is_safe_member(name: str) -> bool:
    parts = re.split(r"[/\\]", name)
    is_absolute = name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) is not None
    return not is_absolute and ".." not in parts


def _parse_sums(data: bytes, zip_path: Path) -> dict[str, str]:
    sums: dict[str, str] = {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _CorruptArchive(f"{zip_path}: {SUMS_FILE} is not UTF-8 text; deleted it") from None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SUMS_LINE.fullmatch(line)
        if not match:
            raise _CorruptArchive(
                f"{zip_path}: {SUMS_FILE} line {lineno} is not '<sha256>  <path>': "
                f"{clip(line, 80)}; deleted it"
            )
        digest, path = match.groups()
        sums[str(PurePosixPath(path.strip()))] = digest.lower()
    if not sums:
        raise _CorruptArchive(f"{zip_path}: {SUMS_FILE} lists no files; deleted it")
    return sums


def _extract_members(
    archive: zipfile.ZipFile,
    members: dict[str, zipfile.ZipInfo],
    sums: dict[str, str],
    dest_root: Path,
    zip_path: Path,
    progress: Progress,
    chunk_size: int,
    max_bytes: int,
) -> None:
    """Write every member under ``dest_root`` and hash it in the same pass (one read per member).

    Counts the bytes actually written, whatever the zip's headers declare, against ``max_bytes``.
    """
    task = progress.add_task(
        "Verifying + extracting", total=sum(i.file_size for i in members.values())
    )
    root = dest_root.resolve()
    written = 0
    for rel, info in members.items():
        dest = dest_root / rel
        if not dest.resolve().is_relative_to(root):  # belt and braces after _is_safe_member
            raise _CorruptArchive(f"{zip_path}: refusing unsafe member path {clip(info.filename)}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with archive.open(info) as src, open(dest, "wb") as dst:
            while chunk := src.read(chunk_size):
                written += len(chunk)
                if written > max_bytes:
                    raise _CorruptArchive(
                        f"{zip_path} expands beyond {max_bytes:,} bytes while extracting "
                        f"{clip(rel, bare=True)} (a zip bomb or not PTB-XL); deleted it"
                    )
                digest.update(chunk)
                dst.write(chunk)
                progress.advance(task, len(chunk))
        expected = sums.get(rel)
        if expected is not None and digest.hexdigest() != expected:
            raise _CorruptArchive(
                f"{zip_path}: checksum mismatch for {clip(rel, bare=True)} (SHA-256 {digest.hexdigest()[:12]}..., "
                f"{SUMS_FILE} says {expected[:12]}...); deleted the download"
            )
