"""One inter-process lock primitive: an exclusive ``flock`` on a lock file."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from ecg_sweep.errors import LockTimeoutError

__all__ = ["file_lock", "try_file_lock", "lock_holder"]

# Poll interval while waiting for a lock with a timeout: short at first, then at most this.
_POLL_MAX_S = 0.5
_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


@contextlib.contextmanager
def file_lock(
    path: str | Path,
    timeout: float | None = None,
    what: str = "lock",
    on_wait: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block.

    Released by the kernel if the process dies, so a killed worker never leaves it held. With
    ``timeout`` (seconds), waiting longer raises :class:`LockTimeoutError` naming the lock file
    and the process holding it; ``None`` waits as long as it takes. ``what`` names the lock in
    that message ("the signal-cache lock"); ``on_wait`` is called once when the lock is busy.

    Whoever holds the lock may delete the lock file (``data cache --prune`` removes unused ones):
    a waiter that then gets the lock on the deleted file notices and locks the new file instead.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
    while True:
        fh = open(path, "a+")  # noqa: SIM115 (closed below or after the with block)
        try:
            if not _try(fh):
                if on_wait is not None:
                    on_wait()
                    on_wait = None
                _wait(fh, path, deadline, timeout, what)
            if _same_file(fh, path):
                break
        except BaseException:
            fh.close()
            raise
        fh.close()  # the file was deleted or replaced while we waited: lock the new one
    with fh:
        _note_holder(fh)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def try_file_lock(path: str | Path) -> Iterator[bool]:
    """Take the lock on ``path`` only if it is free; yields whether it was taken.

    For housekeeping (pruning a cache entry) that must never wait for, or disturb, a live owner.
    Does not create the lock file's folder.
    """
    try:
        fh = open(path, "a+")  # noqa: SIM115 (closed below; the lock lives as long as the handle)
    except OSError:
        yield False
        return
    with fh:
        if not _try(fh) or not _same_file(fh, Path(path)):
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def lock_holder(path: str | Path) -> int | None:
    """The pid the last holder wrote into the lock file, if any (a hint for messages)."""
    try:
        with open(path, "rb") as fh:
            text = fh.read(32).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _try(fh: IO) -> bool:
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in _BUSY:
            raise
        return False
    return True


def _same_file(fh: IO, path: Path) -> bool:
    try:
        a, b = os.fstat(fh.fileno()), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _wait(fh: IO, path: Path, deadline: float | None, timeout: float | None, what: str) -> None:
    if deadline is None:
        fcntl.flock(fh, fcntl.LOCK_EX)
        return
    delay = 0.01
    while not _try(fh):
        left = deadline - time.monotonic()
        if left <= 0:
            pid = lock_holder(path)
            held_by = f" (held by process {pid})" if pid else ""
            raise LockTimeoutError(
                f"gave up after {timeout:g} s waiting for {what} {path}{held_by}; another "
                "ecg-sweep process is still working on it: wait for it to finish, or stop it"
            )
        time.sleep(min(delay, left))
        delay = min(delay * 2, _POLL_MAX_S)


def _note_holder(fh: IO) -> None:
    # Best effort: the pid of the holder, for the timeout message of a waiter. A full disk or a
    # read-only lock file must not stop the lock from working.
    with contextlib.suppress(OSError):
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
