"""The user's mistakes: :class:`UserInputError`, and how a command finds and words one (:func:`find_user_error`)."""

from __future__ import annotations

import re
import sys

# Exceptions of libraries that also mean "the user's mistake"; looked up only once their module is loaded
# (an exception of a module never imported cannot have been raised), so this module stays light to import.
USER_ERROR_TYPES = (
    ("lightning.fabric.utilities.exceptions", "MisconfigurationException"),
    ("jsonargparse", "ArgumentError"),
)


class UserInputError(ValueError):
    """A bad parameter value, file or combination of settings, explained in one line.

    The command-line entry points print its message (no traceback) and exit with status 2.
    Messages name the parameter or file and say what is accepted.
    """


def find_user_error(error: BaseException) -> BaseException | None:
    """The user's mistake behind ``error`` (following its causes), or None for a genuine failure."""
    kinds: list[type[BaseException]] = [UserInputError]
    kinds += [getattr(sys.modules[module], name) for module, name in USER_ERROR_TYPES if module in sys.modules]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, tuple(kinds)):
            return current
        current = current.__cause__ or current.__context__
    return None


def one_line(error: BaseException) -> str:
    """``error``'s message on one line, with jsonargparse's 'Parser key "k":' shown as '--k:'."""
    text = " ".join(str(error).split())
    return re.sub(r'Parser key "([^"]+)":', r"--\1:", text)
