"""The exceptions tidkit raises. Each carries a message a person can read."""


class TidkitError(Exception):
    """Base class of every error tidkit raises on purpose."""


class HashingError(TidkitError, ValueError):
    """A file could not be hashed: corrupt, truncated, empty, not media, or too large.

    ``str(error)`` is a readable sentence suitable to show to the person who chose the file.
    ``error.code`` is a stable machine-readable reason (``empty``, ``unreadable``, ``too_large``,
    ``truncated``, ``no_video_stream``, ``unsupported``).
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class HashFormatError(TidkitError, ValueError):
    """A hash value is not in its canonical form (see tidkit.formats)."""
