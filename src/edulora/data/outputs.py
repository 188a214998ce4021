"""The one check every command that writes files makes before it reads or writes anything.

A command names what it reads and what it writes, each under the name the user typed it with
(``IN``, ``--eval``, ``--html``…). An output that is one of the inputs (through ``./``, a
symbolic link or a hard link) is refused, whatever the option, because the write would destroy
the very data it was made from; two outputs that are one file are refused, because one would
silently replace the other; an existing output is replaced only with ``--overwrite`` (an
``--in-place`` scrub consents for its input), and never when it is read-only: a file nobody may
write was marked so on purpose, and a rename (how outputs are written) would get past the mark.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from itertools import combinations
from pathlib import Path

from ..errors import EduloraError
from .formats import same_file

PathLike = str | os.PathLike
#: Paths by the name the user gave them with (``"IN"``, ``"--out"``); None: not given.
Named = Mapping[str, PathLike | None]


def check_output_file(path: PathLike) -> Path:
    """``path`` as a writable data output: a new or regular file whose folder exists, else ``EduloraError``."""
    path = Path(path)
    if path.is_dir():
        raise EduloraError(f"{path}: is a directory; give a file name for the output")
    if path.exists() and not path.is_file():
        raise EduloraError(f"{path}: exists and is not a regular file (a device or pipe); refusing to replace it")
    if not path.parent.is_dir():
        raise EduloraError(f"{path.parent}: no such directory; create it first")
    return path


def check_outputs(reads: Named, writes: Named, *, overwrite: bool = False,
                  in_place: tuple[str, str] | None = None) -> None:
    """Refuse (``EduloraError``) before any work when an output in ``writes`` may not be written.

    ``in_place`` names one ``(output, input)`` pair allowed to be the same file; that output may then
    replace the input without ``overwrite``.
    """
    sources = {name: path for name, path in reads.items() if path is not None}
    targets = {name: Path(path) for name, path in writes.items() if path is not None}
    consented: set[str] = set()
    for name, target in targets.items():
        check_output_file(target)
        for source_name, source in sources.items():
            if not same_file(source, target):
                continue
            if (name, source_name) != in_place:
                raise EduloraError(f"{name} {target} is the input file {source_name} ({source}); "
                                   "choose another output file")
            consented.add(name)
    for (name, target), (other, second) in combinations(targets.items(), 2):
        if same_file(target, second):
            raise EduloraError(f"{name} and {other} must be different files (both are {target})")
    for name, target in targets.items():
        if not target.exists():
            continue
        if not (overwrite or name in consented):
            raise EduloraError(f"{target}: exists; pass --overwrite to replace it")
        if not os.stat(target).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            raise EduloraError(f"{target}: is read-only; make it writable (chmod u+w) to replace it")


__all__ = ["check_output_file", "check_outputs"]
