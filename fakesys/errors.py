"""The one error type that crosses layers: a kernel errno.

The emulated kernel returns negative errno values from its store functions
and ioctls; here that is ``raise Errno(errno.EINVAL, "why")``.  The FUSE
server turns it into the same errno for the calling process, so the real
tools see exactly what a real kernel would have told them.
"""

from __future__ import annotations

import errno as _errno
import logging

log = logging.getLogger("fakesys")


class Errno(Exception):
    """A kernel error: ``errno`` is the positive errno value."""

    def __init__(self, errno: int, why: str = "") -> None:
        super().__init__(errno, why)
        self.errno = errno
        self.why = why

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno, str(self.errno))
        return f"{name}: {self.why}" if self.why else name
