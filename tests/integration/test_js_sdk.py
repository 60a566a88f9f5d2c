"""Wire compatibility with the official Backendless JS SDK (npm ``backendless``, pinned in
``tests/js/package.json``), docs/design.md §5.

``tests/js/sdk_flow.js`` drives a running devreg worker through the SDK's public API
(``initApp`` → ``setupDevice`` → ``Messaging.registerDevice`` / ``getRegistrations`` /
``unregisterDevice``) and prints one JSON object with every step's result or error
``{code, status, message, body}``. This module runs it for both URL forms the SDK knows:

- classic: ``initApp({appId, apiKey, serverURL})`` → ``/<app-id>/<api-key>/messaging/...``
- domain:  ``initApp("http://host:port")``         → ``/api/messaging/...`` (the default app)

The script is a subprocess, so the worker must serve HTTP while the test awaits it: the test
is async and never blocks the event loop (the worker may run in-process on the same loop).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parents[1] / "js"
SCRIPT = JS_DIR / "sdk_flow.js"
SDK_PACKAGE = JS_DIR / "node_modules" / "backendless" / "package.json"
NODE = shutil.which("node")
TIMEOUT_S = 60.0

if NODE is None:
    pytest.skip(
        "Node.js (`node`) is not installed: the Backendless JS SDK wire test needs it",
        allow_module_level=True,
    )
if not SDK_PACKAGE.is_file():
    pytest.skip(
        "the Backendless JS SDK is not installed: run `cd tests/js && npm install` "
        "(`make test` does it)",
        allow_module_level=True,
    )

UUID_UPPER = r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}"
PAIR = re.compile(rf"^({UUID_UPPER})::(.+)$")
REGISTRATION_KEYS = {"id", "deviceId", "deviceToken", "os", "osVersion", "channels", "expiration"}
ERROR_KEYS = {"code", "message", "errorData"}


async def run_sdk_flow(worker: Any, form: str, extra_env: dict[str, str]) -> dict[str, Any]:
    """Run ``sdk_flow.js`` against the worker and return the JSON object it printed."""
    assert NODE is not None
    env = {
        **os.environ,
        "DEVREG_URL": worker.base_url.rstrip("/"),
        "DEVREG_APP_ID": worker.app_id,
        "DEVREG_API_KEY": worker.api_key,
        "DEVREG_URL_FORM": form,
        **extra_env,
    }
    proc = await asyncio.create_subprocess_exec(
        NODE,
        str(SCRIPT),
        cwd=JS_DIR,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        pytest.fail(f"sdk_flow.js ({form}) did not finish within {TIMEOUT_S:.0f} s")
    err_text = stderr.decode(errors="replace")
    out_text = stdout.decode(errors="replace")
    lines = [line for line in out_text.splitlines() if line.strip()]
    context = f"stdout:\n{out_text}\nstderr:\n{err_text}"
    assert proc.returncode == 0, f"sdk_flow.js ({form}) exited with {proc.returncode}\n{context}"
    assert lines, f"sdk_flow.js ({form}) printed nothing\n{context}"
    observed: dict[str, Any] = json.loads(lines[-1])
    observed["_stderr"] = err_text
    return observed


def registration_pairs(value: Any) -> dict[str, str]:
    """``{"registrationId": "<ID>::<ch>,<ID>::<ch>"}`` → ``{channel: ID}`` (checked shape)."""
    assert isinstance(value, dict), f"registerDevice should resolve to an object, got {value!r}"
    reg_id = value.get("registrationId")
    assert isinstance(reg_id, str), f"registrationId must be a string, got {reg_id!r}"
    pairs: dict[str, str] = {}
    for part in reg_id.split(","):
        match = PAIR.match(part)
        assert match, f"{part!r} in {reg_id!r} is not '<UPPER-CASE-UUID>::<channel>'"
        assert match.group(2) not in pairs, f"channel repeated in {reg_id!r}"
        pairs[match.group(2)] = match.group(1)
    return pairs


def ok_value(observed: dict[str, Any], name: str) -> Any:
    step = observed["steps"][name]
    assert step["ok"], f"{name} failed: {step.get('error')}"
    value = step["value"]
    if isinstance(value, dict):
        # The Swift SDK reads a 2xx body with top-level code + message as a fault.
        assert not {"code", "message"} <= value.keys(), f"{name}: success body looks like a fault"
    return value


def single_registration(observed: dict[str, Any], name: str) -> dict[str, Any]:
    value = ok_value(observed, name)
    assert observed["steps"][name]["type"] == "array", f"{name} should return a list: {value!r}"
    assert len(value) == 1, f"{name} should return one registration: {value!r}"
    reg: dict[str, Any] = value[0]
    assert reg.keys() >= REGISTRATION_KEYS, f"{name} misses {REGISTRATION_KEYS - reg.keys()}"
    return reg


def assert_fault(observed: dict[str, Any], name: str, code: int, status: int = 400) -> None:
    step = observed["steps"][name]
    assert not step["ok"], f"{name} should fail with {code}, returned {step.get('value')!r}"
    error = step["error"]
    assert error["code"] == code, f"{name}: expected code {code}, got {error}"
    assert error["status"] == status, f"{name}: expected HTTP {status}, got {error}"
    assert isinstance(error["message"], str), f"{name}: message is not a string: {error}"
    assert error["message"], f"{name}: empty message: {error}"
    body = error["body"]
    assert isinstance(body, dict), f"{name}: error body is not a JSON object: {body!r}"
    assert body.keys() >= ERROR_KEYS, f"{name}: error body misses {ERROR_KEYS - body.keys()}"


def check_contract(observed: dict[str, Any]) -> None:
    device = observed["device"]
    uuid, tokens = device["uuid"], observed["tokens"]
    expected_os = str(device["platform"]).upper()

    # initApp fires GET <appPath>/info; DESIGN: 200 {}.
    assert ok_value(observed, "appInfo") == {}

    # registerDevice(token1, ["news", "sport"], Date in 1 h). The SDK encodes the Date as
    # (fractional) seconds: succeeding at all proves they were not read as ms (1970 → 5004).
    first = registration_pairs(ok_value(observed, "register1"))
    assert set(first) == {"news", "sport"}
    assert len(set(first.values())) == 2, f"one id per channel: {first}"

    reg = single_registration(observed, "get1")
    assert reg["deviceId"] == uuid
    assert reg["deviceToken"] == tokens["token1"]
    assert reg["os"] == expected_os
    assert str(reg["osVersion"]) == str(device["version"])
    assert set(reg["channels"]) == {"news", "sport"}

    # Re-registration with a new token and ["alerts"] (expiration as a number, in ms).
    second = registration_pairs(ok_value(observed, "register2"))
    assert set(second) == {"alerts"}
    assert second["alerts"] not in first.values()

    reg = single_registration(observed, "get2")
    assert reg["deviceId"] == uuid
    assert reg["deviceToken"] == tokens["token2"], "re-registration must replace the token"
    assert reg["os"] == expected_os
    assert set(reg["channels"]) == {"alerts", "news", "sport"}, "upsert keeps other channels"

    # Registration ids are stable per (app, device, channel).
    third = registration_pairs(ok_value(observed, "register3"))
    assert third == {"news": first["news"]}

    # Expiration in the past, as a Date (seconds on the wire) and as a number (ms).
    assert_fault(observed, "registerPastDate", 5004)
    assert_fault(observed, "registerPastMs", 5004)

    # Mobile SDKs fetch push templates after registering; DESIGN: 200 {}.
    assert ok_value(observed, "pushTemplates") == {}

    # {"result": true} reaches the caller unchanged (the JS SDK does not unwrap it).
    assert ok_value(observed, "unregister1") == {"result": True}
    assert_fault(observed, "getAfterUnregister", 5000)
    assert_fault(observed, "unregister2", 5001)


CASES = [
    pytest.param("classic", {}, id="classic"),
    pytest.param("domain", {}, id="domain"),
    pytest.param(
        "classic",
        {
            "DEVREG_USER_TOKEN": "sdk-flow-user-token",
            "DEVREG_PLATFORM": "ios",
            "DEVREG_OS_VERSION": "17",
            "DEVREG_OS_VERSION_TYPE": "number",
        },
        id="classic-user-token-numeric-os-version",
    ),
]


@pytest.mark.parametrize(("form", "extra_env"), CASES)
async def test_backendless_js_sdk_flow(
    devreg_worker: Any, form: str, extra_env: dict[str, str]
) -> None:
    observed = await run_sdk_flow(devreg_worker, form, extra_env)
    assert "crash" not in observed, f"sdk_flow.js crashed: {observed['crash']}"
    expected_path = (
        f"{devreg_worker.base_url.rstrip('/')}/api"
        if form == "domain"
        else f"{devreg_worker.base_url.rstrip('/')}/{devreg_worker.app_id}/{devreg_worker.api_key}"
    )
    assert observed["appPath"] == expected_path
    try:
        check_contract(observed)
    except AssertionError as exc:
        stderr = observed.pop("_stderr")
        dump = json.dumps(observed, indent=1)
        raise AssertionError(f"{exc}\n\nSDK run ({form}):\n{dump}\nstderr:\n{stderr}") from None
