"""tidkit: hashing, matching and list sync for platforms taking part in tidportal.

No Django anywhere in this package: partners install it on its own (`pip install ./tidkit`),
and the tidportal server imports the same modules so that there is one implementation.
"""

from tidkit.errors import HashFormatError, HashingError, TidkitError

__all__ = ["HashFormatError", "HashingError", "TidkitError"]
__version__ = "0.1.0"
