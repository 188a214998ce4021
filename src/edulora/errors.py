"""The one error type for user mistakes.

The CLI turns an ``EduloraError`` into a one-line message and exit code 2; any other
exception is a bug in edulora and is allowed to show a traceback.
"""

import errno

#: OS errors that mean the disk is full (a quota counts): the user's to fix, not a bug.
OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class EduloraError(Exception):
    """A problem with the user's input, files or settings (not a bug in edulora)."""

    #: How the CLI names it (``edulora: error: …``) and the exit code it ends with.
    label, exit_code = "error", 2


class NothingToDo(EduloraError):
    """Not a mistake: what was asked is already done (resuming a finished run). One line, exit 0."""

    label, exit_code = "nothing to do", 0
