"""Output folders that are safe and atomic.

A command checks its ``--out`` folder *before* doing any work (:func:`check_output`) and
writes into a temporary sibling that replaces ``--out`` only when everything succeeded
(:func:`atomic_output`). It never replaces a folder it did not write: every output folder
carries a marker file, and an existing non-empty folder without one is refused, as are the
current directory, its parents and the home folder.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .errors import GNSError

MARKER = ".gnsched-output"


def partial_dir(out: Path) -> Path:
    """Where a resumable command (``gnsched train``) keeps ``out`` while it is being made: the
    hidden sibling ``.<name>.partial``, renamed to ``out`` by :func:`promote` when complete."""
    out = Path(out)
    return out.parent / f".{out.name}.partial"


def promote(work: Path, out: Path) -> None:
    """Mark ``work`` as a finished gnsched output and move it to ``out``, replacing a previous
    gnsched output there only now (``out`` was checked with :func:`check_output`)."""
    try:
        (work / MARKER).write_text("written by gnsched; this folder may be replaced by the next run\n")
        os.chmod(work, 0o755)
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        work.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        raise GNSError(f"cannot write the output folder {out}: {e.strerror or e}.") from None


def check_output(out: Path, protect: tuple[Path, ...] = ()) -> Path:
    """Validate ``out`` as an output folder; returns it resolved. ``protect`` lists input
    files (an agent being applied) that must not live inside it."""
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise GNSError(f"--out {out} is a file; give a folder path.")
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if out == home or out == Path(out.anchor) or out == cwd or out in cwd.parents:
        raise GNSError(f"--out {out} is the current, home or a parent folder; give a new folder for the outputs.")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise GNSError(f"--out {out} already exists and was not written by gnsched; "
                       "give a new or empty folder (gnsched only replaces its own output folders).")
    for p in protect:
        p = Path(p).expanduser().resolve()
        if p == out or out in p.parents:
            raise GNSError(f"--out {out} holds the input {p}, which would be replaced; give another folder.")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=parent)
        os.rmdir(probe)
    except OSError as e:
        raise GNSError(f"cannot write the output folder {out}: {e.strerror or e}.") from None
    return out


@contextlib.contextmanager
def atomic_output(out: Path):
    """Yield a temporary folder that replaces ``out`` only if the block succeeds."""
    out = check_output(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        raise GNSError(f"cannot write the output folder {out}: {e.strerror or e}.") from None
    try:
        yield tmp
        promote(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise GNSError(f"cannot write the output folder {out}: {e.strerror or e}.") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
