"""The one exception type that means "the user asked for something that cannot be done"."""


class UserInputError(ValueError):
    """A bad parameter value, file or combination of settings, explained in one line.

    The command-line entry points print its message (no traceback) and exit with status 2.
    Messages name the parameter or file and say what is accepted.
    """
