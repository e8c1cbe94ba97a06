"""The command line's one error type, in its own module so every command module raises the same class
(also when main.py runs as `python -m tcfuzz.cli.main`)."""


class UsageError(Exception):
    """Bad input: reported on one line, exit status 2."""
