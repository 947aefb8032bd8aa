"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class ZSLError(Exception):
    """A mistake in the user's input (path, file, field, flag, config value).

    The message must name the file, field or flag and say what would be valid.
    """

    exit_code = 2


class DataError(ZSLError):
    """A data file is missing, malformed, truncated or inconsistent."""


class ConfigError(ZSLError):
    """A configuration key or value is unknown or invalid."""


class TrainingError(ZSLError):
    """Training cannot go on (e.g. a NaN/Inf loss); the reason is in the message."""

    exit_code = 3
