"""`make run` as a new user meets it (no configuration at all): the demo app's admin key is
generated once into the data directory and printed, the custom-domain form serves the demo
app, and the four requests of issue 14 are refused (401/403, or 400 with the admin key),
never answered with data or a 500."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.log.broker import free_port
from tests.support import ADMIN_HEADER, WorkerProcess

B = "{base}"
# Issue 14, verbatim but for the host: each worked without a key, or answered 500.
CURLS = [
    f"{B}/api/messaging/channels/news/devices.ndjson",
    f"{B}/api/messaging/registrations/phone-1/history",
    f"{B}/api/messaging/channels/news/devices?limit=%C2%B2",
    f"{B}/demo-app/demo-rest-key/messaging/registrations/phone-1/as-of/%C2%B2",
]


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
        return r.status, await r.json(content_type=None) if r.status != 200 else await r.read()


@pytest.fixture
async def demo(tmp_path: Path) -> Any:
    # The test workers' configuration, emptied: devreg reads an empty variable as unset.
    unset = {"DEVREG_APPS": "", "DEVREG_DOMAIN_APP": "", "DEVREG_TOKEN_KEYS": ""}
    run = WorkerProcess(
        tmp_path / "data",
        None,
        command="run",
        env={**unset, "DEVREG_BROKER_PORT": str(free_port())},
    )
    run.app_id, run.api_key = "demo-app", "demo-rest-key"
    await run.start()
    yield run
    await run.stop()


async def test_given_make_run_defaults_then_keys_are_made_and_the_issue_s_requests_refused(
    demo: WorkerProcess,
) -> None:
    # Given `devreg run` with no configuration: an admin key generated into the data
    # directory, readable by its owner only, and printed in the banner with the domain form
    key_file = demo.data_dir / "demo-admin.key"
    admin_key = key_file.read_text().strip()
    assert len(admin_key) >= 16
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((demo.data_dir / "token-fingerprint.keys").stat().st_mode) == 0o600
    banner = demo.log()
    assert f"admin key:       {admin_key}" in banner
    assert "/api/messaging/registrations serves app 'demo-app'" in banner

    # When the issue's four requests are sent as they were, without the admin key
    for curl in CURLS:
        status, body = await get(curl.format(base=demo.base_url))
        # Then each is refused with a Backendless error, and no data
        assert status in (401, 403), (curl, status, body)
        assert set(body) == {"code", "message", "errorData"}, body
        assert body["code"] == 8003, body

    # And with the admin key, the bad parameters are a 400 naming them, never a 500
    admin = {ADMIN_HEADER: admin_key}
    status, body = await get(CURLS[2].format(base=demo.base_url), admin)
    assert (status, body["code"]) == (400, 5002)
    assert "'limit'" in body["message"]
    status, body = await get(CURLS[3].format(base=demo.base_url), admin)
    assert (status, body["code"]) == (400, 5002)
    assert "'instant'" in body["message"]
    status, _ = await get(CURLS[0].format(base=demo.base_url), admin)
    assert status == 200

    # And a restart keeps the same admin key
    await demo.stop()
    await demo.start()
    assert key_file.read_text().strip() == admin_key
    status, _ = await get(CURLS[0].format(base=demo.base_url), admin)
    assert status == 200
