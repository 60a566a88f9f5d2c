"""Optional: the same closed-loop load with `wrk` (C, one thread) instead of bench.load.

Used with `python -m bench --wrk` when wrk is installed; it leaves more CPU to the server
under test than the Python load generator does, which matters on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from pathlib import Path

from bench.load import Summary

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}

REGISTER_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local id = string.format("%s-%d", "{prefix}", counter)
  local body = '{{"deviceToken":"tok-' .. id .. '","deviceId":"' .. id ..
    '","os":"ANDROID","osVersion":"14","channels":["news"]}}'
  return wrk.format("POST", "{path}", {{["Content-Type"]="application/json"}}, body)
end
"""

GET_LUA = """
request = function()
  local id = string.format("device-%08d", math.random(0, {devices} - 1))
  return wrk.format("GET", "{path}/" .. id)
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unreadable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse(output: str) -> Summary:
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", output, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: .*", output)
    failed = int(errors.group(1)) if errors else 0
    if socket_errors:
        failed += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(0)))
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", output)
    if failed and total:
        # wrk's Requests/sec counts failures too; count only the successes
        seconds = _ms(total.group(2) + total.group(3)) / 1000
        rate = max(int(total.group(1)) - failed, 0) / seconds
    return Summary(rate, _ms(latency["50"]), _ms(latency["99"]), failed)


async def run(url: str, lua: str, connections: int, duration_s: float) -> Summary:
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "script.lua"
        script.write_text(lua)
        process = await asyncio.create_subprocess_exec(
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            "--latency",
            "-s",
            str(script),
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
    return parse(out.decode())
