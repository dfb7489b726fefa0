"""Errors in what a user gave physnet, and the helpers that name them.

A :class:`UserError` says, in one line, which file, frame, key or argument is wrong, what is
wrong with it and how to fix it. The ``physnet`` command prints it as
``physnet <command>: error: <message>`` and exits with status 2, without a traceback (unless
``--debug``). It subclasses ``ValueError``, so code that catches ``ValueError`` for bad
arguments keeps working.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["UserError", "UnknownKeyError", "atomic_write", "check_writable", "close_match", "load_torch_file"]


class UserError(ValueError):
    """A problem with the user's input: a file, a frame, a config key or a command-line argument."""


class UnknownKeyError(UserError, TypeError):
    """An unknown keyword (a typo in a config key or model argument); also a ``TypeError``,
    as Python raises for an unexpected keyword argument."""


def close_match(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices`` to ``word``, or ``""``.

    >>> close_match("n_featres", ["n_features", "cutoff"])
    " (did you mean 'n_features'?)"
    """
    found = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {found[0]!r}?)" if found else ""


def load_torch_file(path: str | os.PathLike, what: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with one :class:`UserError` naming ``path`` for a
    missing, empty, truncated or foreign file (torch raises ``EOFError``, ``OSError`` or a
    zip-reader ``RuntimeError`` without the file's name).

    Args:
        path: the file.
        what: what the file should be, for the message (e.g. ``"physnet potential"``).
        map_location: as in :func:`torch.load`.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no {what} file at {path}")
    if path.is_dir():
        raise UserError(f"{path} is a directory; give the path of a {what} file")
    size = path.stat().st_size
    if path.suffix == ".pt2":
        raise UserError(
            f"{path} is an exported .pt2 file (compiled code, no weights to load), not a {what}; give "
            "the potential.pt or checkpoint it was exported from (physnet md and physnet.Calculator run .pt2)"
        )
    if size == 0:
        raise UserError(
            f"{path} is empty (0 bytes), not a {what}; it was probably cut off while being written "
            "or copied: use another copy or train again"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises EOFError, OSError, KeyError, UnpicklingError, RuntimeError ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        first = first.split(". ")[0]
        raise UserError(
            f"{path} ({size} bytes) is not a readable {what}: truncated or corrupt "
            f"({type(err).__name__}: {first[:160]}); use another copy or train again"
        ) from err


def atomic_write(path: str | os.PathLike, write: Any) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary file in the same folder, which
    is flushed to disk and renamed over ``path`` (``os.replace``), so a reader or a kill during the
    save sees the old file or the new one, never half of one.

    Args:
        path: the file to (re)place.
        write: a callable taking the temporary path (a ``str``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from the user's group
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_writable(folder: str | os.PathLike, what: str) -> Path:
    """Raise one :class:`UserError` naming ``folder`` when files cannot be written in it: checked
    before any work (reading data, training) rather than after. Folders that are missing are
    created for the check and removed again, so nothing is left behind.

    Args:
        folder: the folder outputs will go to (it need not exist yet).
        what: how the user named it, for the message (e.g. ``"run_dir"``, ``"--output"``).

    Returns:
        ``folder`` as a :class:`~pathlib.Path`.
    """
    import tempfile

    folder = Path(folder)
    missing: list[Path] = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    if p.exists() and not p.is_dir():
        raise UserError(
            f"{what} {folder} cannot be created: {p} is a file, not a folder; choose another {what}"
        )
    created: list[Path] = []
    try:
        for d in reversed(missing):
            try:
                d.mkdir()
            except OSError as err:
                where = "" if d == folder else f"{d}: "
                raise UserError(
                    f"{what} {folder} cannot be created ({where}{err.strerror or err}); "
                    "choose a folder you can write"
                ) from None
            created.append(d)
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            raise UserError(
                f"{what} {folder} cannot be written in ({err.strerror or err}); choose a folder you can write"
            ) from None
    finally:
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass
    return folder
