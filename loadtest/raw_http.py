"""A keep-alive HTTP/1.1 client on asyncio streams, for benchmarks that must not be client-bound.

With httpx, ``bench_payments`` reached 81 payments/s with the instance at a third of its core
(sixteenth session): it measured httpx (about 10 ms of CPU per request in the fifteenth session's
introspection bursts). This client writes the request bytes and reads one ``Content-Length`` response
per request: nothing else (no chunked bodies, no redirects, no TLS).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class ResponseError(Exception):
    """The server answered with something this client does not read."""


class KeepAliveConnection:
    """One TCP connection, requests sent one after another on it (reconnects when the server closes)."""

    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"plain http://host:port URLs only, not {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        self._host_header = f"{self.host}:{self.port}".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
        """Send one request and return (status, body); closes the connection on any failure."""
        try:
            return await asyncio.wait_for(self._exchange(method, path, headers, body), self.timeout_s)
        except BaseException:
            await self.close()
            raise

    async def _exchange(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self._host_header]
        lines += [f"{name}: {value}".encode() for name, value in headers.items()]
        lines.append(b"Content-Length: " + str(len(body)).encode())
        self._writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].split(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length: int | None = None
        close = False
        for line in header_lines:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise ResponseError(f"transfer-encoding {value.strip().decode()!r} is not read by this client")
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length is None:
            raise ResponseError(f"a {status} response without Content-Length")
        payload = await self._reader.readexactly(length)
        if close:
            await self.close()
        return status, payload

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
