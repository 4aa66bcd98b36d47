"""The daemon's control socket as its clients speak it: one command line in,
one line out (JSON for the verbs that report), the socket then closed.

Kept apart from runtime.py (which finds a fake's socket) so that the
launcher's seccomp hand-over (sandbox/seccomp.py), which speaks it too,
depends on nothing above the sandbox.
"""

from __future__ import annotations

import socket


def recv_line(sock: socket.socket) -> bytes:
    """A control-socket reply: bytes up to and including the newline (or EOF)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data
