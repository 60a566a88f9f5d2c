"""The token index (services/tokens/index_store.py) on a real SQLite file: who holds a token,
who a claim supersedes, and what a re-sent record or a tombstone does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from projections.positions import Record
from services.tokens import records
from services.tokens.index_store import IndexStore, Superseded
from services.tokens.records import Claim, Release

APP, FP = "app", "f" * 64


class Feed:
    def __init__(self, store: IndexStore):
        self.store, self.offset = store, 0

    async def send(
        self, device: str, value: Claim | Release | None, app_id: str = APP
    ) -> list[Superseded]:
        record = Record(
            "devreg.tokens",
            0,
            self.offset,
            0,
            records.record_key((app_id, FP, device)),
            records.record_value(value),
        )
        self.offset += 1
        superseded, positions = await self.store.fold([record], frozenset({APP}))
        await self.store.commit(positions)
        return superseded


@pytest.fixture
async def feed(tmp_path: Path) -> AsyncIterator[Feed]:
    store = await IndexStore.open(tmp_path / "index.sqlite")
    yield Feed(store)
    await store.close()


async def test_given_a_claim_by_another_device_then_the_holder_is_superseded(feed: Feed) -> None:
    # Given d1 holds the token, and claims it again itself (not superseded)
    assert await feed.send("d1", Claim("r1", 1, 100)) == []
    assert await feed.send("d1", Claim("r2", 2, 200)) == []

    # When d2 claims it
    superseded = await feed.send("d2", Claim("r3", 1, 300))

    # Then d1's latest registration is superseded by d2's, and d2 holds the token
    assert superseded == [Superseded(APP, "d1", "d2", "r2", "r3")]
    holder = await feed.store.holder(APP, FP)
    assert holder is not None
    assert holder.device_id == "d2"


async def test_given_a_re_sent_claim_then_it_changes_nothing(feed: Feed) -> None:
    await feed.send("d1", Claim("r1", 1, 100))
    await feed.send("d2", Claim("r2", 1, 200))

    # A processor deciding d1's partition again re-sends its claim: a repeat by version.
    assert await feed.send("d1", Claim("r1", 1, 100)) == []

    holder = await feed.store.holder(APP, FP)
    assert holder is not None
    assert holder.device_id == "d2"


async def test_given_a_release_or_a_tombstone_then_the_token_has_no_holder(feed: Feed) -> None:
    await feed.send("d1", Claim("r1", 1, 100))
    await feed.send("d1", Release(2))
    assert await feed.store.holder(APP, FP) is None

    await feed.send("d2", Claim("r2", 1, 200))
    await feed.send("d2", None)  # forgotten
    assert await feed.store.holder(APP, FP) is None


async def test_given_an_app_that_allows_shared_tokens_then_nobody_is_superseded(feed: Feed) -> None:
    await feed.send("d1", Claim("r1", 1, 100), app_id="other")
    assert await feed.send("d2", Claim("r2", 1, 200), app_id="other") == []
