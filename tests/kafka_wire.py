"""The bits of the Kafka wire protocol the test front (tests/kafka_front.py) speaks itself:
size-prefixed frames, the request header, strings, and the SASL answers."""

from __future__ import annotations

import asyncio
import struct

SASL_AUTHENTICATION_FAILED = 58


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def skip_client_id(frame: bytes) -> bytes:
    (size,) = struct.unpack(">h", frame[8:10])  # request header v1: nullable client_id
    return frame[10 + max(size, 0) :]


def string(data: bytes, at: int) -> str:
    (size,) = struct.unpack(">h", data[at : at + 2])
    return data[at + 2 : at + 2 + size].decode()


def encode_string(text: str) -> bytes:
    return struct.pack(">h", len(text.encode())) + text.encode()


async def reply(writer: asyncio.StreamWriter, correlation: int, body: bytes) -> None:
    writer.write(framed(struct.pack(">i", correlation) + body))
    await writer.drain()


async def auth_reply(
    writer: asyncio.StreamWriter, correlation: int, version: int, good: bool, auth: bytes
) -> None:
    body = struct.pack(">h", 0 if good else SASL_AUTHENTICATION_FAILED)
    message = b"Authentication failed: invalid credentials"
    body += struct.pack(">h", -1) if good else struct.pack(">h", len(message)) + message
    body += struct.pack(">i", len(auth)) + auth
    if version >= 1:
        body += struct.pack(">q", 0)  # session lifetime (ms): none
    await reply(writer, correlation, body)
