"""`devreg forget APP DEVICE`: erase a device's personal data, through its own single writer.

It sends a ForgetDevice command and prints the outcome. The device's worker decides it (a
DeviceForgotten event in the device's history), erases the device's data keys and
tombstones them on the keys topic, and the token index drops the device's fingerprints
(docs/audit.md, "Erasure").
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

import msgspec

from events import ForgetDevice
from services import event_loop
from services.audit.publish import PublishError, publish
from services.clock import now_ms
from services.config import Settings, require_kafka
from services.log.reader import LogError


def forget_main(settings: Settings, args: argparse.Namespace) -> int:
    kafka = require_kafka(settings, "forget")
    command = ForgetDevice(
        command_id=f"forget-{uuid.uuid4().hex}",
        app_id=args.app,
        device_id=args.device,
        issued_at=now_ms(),
        reason=args.reason,
    )

    async def work() -> int:
        topics = (settings.commands_topic, settings.outcomes_topic)
        outcome = await publish(kafka, *topics, command, args.wait)
        sys.stdout.buffer.write(msgspec.json.encode(outcome) + b"\n")
        return 0 if outcome.accepted else 1

    try:
        return event_loop.run(work(), settings.event_loop)
    except (PublishError, LogError) as exc:
        print(f"devreg forget: {exc}", file=sys.stderr)
        return 2


def add_forget(sub: Any) -> None:
    p = sub.add_parser("forget", help="erase a device's personal data (crypto-shredding)")
    p.add_argument("app", help="app id")
    p.add_argument("device", help="device id")
    p.add_argument("--reason", default="requested", help="recorded in the DeviceForgotten event")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the outcome")
