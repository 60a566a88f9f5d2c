"""Stand-in HTTP servers for the register benchmark, each run in a process of its own.

`validate`:  the baseline — a trivial aiohttp handler that decodes and validates the body
             with msgspec and answers, nothing else.
`kafka-ack`: devreg's register path up to "the command is acknowledged by Kafka", with
             read-your-writes off: validate, build the RegisterDevice command, encode it, send
             it with the producer settings devreg uses and answer once Kafka acknowledges.
             devreg has no switch for that mode, so this is how the issue's target figure
             (POST → command acknowledged by Kafka) is measured. Nothing consumes the topic.

    python -m bench.servers validate --port P
    python -m bench.servers kafka-ack --port P --bootstrap HOST:PORT --topic T
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import uuid
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web
from aiokafka import AIOKafkaProducer

from events import RegisterDevice, encode
from events.identity import partition_key

PATH = "/{app_id}/{api_key}/messaging/registrations"


class Body(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    deviceToken: str
    deviceId: str
    os: str
    osVersion: str | int | float = ""
    channels: list[str] | None = None
    expiration: int | float | None = None


_decoder = msgspec.json.Decoder(Body)
_encoder = msgspec.json.Encoder()
Handler = Callable[[web.Request], Awaitable[web.Response]]


def _error(message: str) -> web.Response:
    body = {"code": 5002, "message": message, "errorData": {}}
    return web.Response(body=_encoder.encode(body), status=400, content_type="application/json")


def _answer(body: Body) -> web.Response:
    registration = f"{uuid.uuid4().hex.upper()}::{(body.channels or ['default'])[0]}"
    return web.Response(
        body=_encoder.encode({"registrationId": registration}), content_type="application/json"
    )


async def validate(request: web.Request) -> web.Response:
    try:
        body = _decoder.decode(await request.read())
    except msgspec.DecodeError as exc:
        return _error(str(exc))
    return _answer(body)


def kafka_ack(producer: AIOKafkaProducer, topic: str) -> Handler:
    async def register(request: web.Request) -> web.Response:
        try:
            body = _decoder.decode(await request.read())
        except msgspec.DecodeError as exc:
            return _error(str(exc))
        app_id = request.match_info["app_id"]
        command = RegisterDevice(
            command_id=uuid.uuid4().hex,
            app_id=app_id,
            device_id=body.deviceId,
            issued_at=0,
            device_token=body.deviceToken,
            os=body.os.upper(),
            os_version=str(body.osVersion),
            channels=tuple(body.channels or ()),
        )
        key = partition_key(app_id, body.deviceId)
        await producer.send_and_wait(topic, encode(command), key=key)
        return _answer(body)

    return register


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = web.Application()
    producer: AIOKafkaProducer | None = None
    if args.mode == "kafka-ack":
        # The producer settings of services/worker.py.
        producer = AIOKafkaProducer(
            bootstrap_servers=args.bootstrap, acks="all", linger_ms=1, enable_idempotence=False
        )
        await producer.start()
        app.router.add_post(PATH, kafka_ack(producer, args.topic))
    else:
        app.router.add_post(PATH, validate)
    app.router.add_get("/readyz", lambda request: _ready())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        if producer is not None:
            await producer.stop()


async def _ready() -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("mode", choices=["validate", "kafka-ack"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bootstrap")
    parser.add_argument("--topic")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
