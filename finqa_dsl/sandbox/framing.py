"""How the parent and a sandbox worker frame their messages: a 4-byte big-endian length, then UTF-8 JSON.

One pair of functions for both ends of both pipes (requests on the worker's stdin, answers on its stdout):
:func:`frame` and :func:`write_all` to send, :func:`read_message` to receive. Stdlib only: the worker imports it
as a plain module (it runs as ``python -I -S worker.py``, where the package is not importable). A child's
result to its worker is not framed: one JSON object, then the pipe's end (see worker.py).
"""

from __future__ import annotations

import json
import os
import struct

HEADER = struct.Struct(">I")


def frame(payload: dict) -> bytes:
    """``payload`` as one message: its JSON's length, then the JSON."""
    data = json.dumps(payload).encode()
    return HEADER.pack(len(data)) + data


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (a pipe may take it in parts); OSError if the reader is gone."""
    while data:
        data = data[os.write(fd, data):]


def read_message(fd: int) -> dict | None:
    """The next message on ``fd``; None at the end of the pipe or for anything that is not a framed JSON object."""
    header = _read_exact(fd, HEADER.size)
    body = header and _read_exact(fd, HEADER.unpack(header)[0])
    try:
        message = json.loads(body) if body else None
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _read_exact(fd: int, size: int) -> bytes | None:
    """``size`` bytes from ``fd``, or None if the pipe ends first."""
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
