"""The token index folds a batch with a few statements (services/tokens/index_store.py):
whatever the records and however they are split into batches, the index ends as applying
them one at a time, in order, leaves it, and the same supersedes are found."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from projections.positions import Record
from services.tokens import records
from services.tokens.index_store import Holder, IndexStore, Superseded
from services.tokens.records import Claim, Release

TOPIC = "tokens"
SUPERSEDING = frozenset({"a"})
Op = tuple[records.Slot, Claim | Release | None]
ops = st.lists(
    st.tuples(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.sampled_from(["f1", "f2"]),
            st.sampled_from(["d1", "d2", "d3"]),
        ),
        st.one_of(
            st.none(),
            st.builds(Release, st.integers(1, 6)),
            st.builds(
                Claim, st.sampled_from(["r1", "r2", "r3"]), st.integers(1, 6), st.integers(0, 9)
            ),
        ),
    ),
    max_size=40,
)


def one_at_a_time(
    applied: list[Op],
) -> tuple[dict[records.Slot, int], dict[tuple[str, str], Holder], list[Superseded]]:
    """The index's rules, record by record (the model)."""
    seen: dict[records.Slot, int] = {}
    holders: dict[tuple[str, str], Holder] = {}
    superseded: list[Superseded] = []
    for slot, value in applied:
        app_id, fp, device_id = slot
        holder = holders.get((app_id, fp))
        if value is None:
            seen.pop(slot, None)
            if holder is not None and holder.device_id == device_id:
                del holders[(app_id, fp)]
            continue
        if slot in seen and value.version <= seen[slot]:
            continue
        seen[slot] = value.version
        if isinstance(value, Release):
            if holder is not None and holder.device_id == device_id:
                del holders[(app_id, fp)]
            continue
        holders[(app_id, fp)] = Holder(device_id, value.registration, value.occurred_at)
        if holder is not None and holder.device_id != device_id and app_id in SUPERSEDING:
            superseded.append(
                Superseded(
                    app_id, holder.device_id, device_id, holder.registration, value.registration
                )
            )
    return seen, holders, superseded


async def folded(
    applied: list[Op], cuts: list[int], path: Path
) -> tuple[dict[records.Slot, int], dict[tuple[str, str], Holder], list[Superseded]]:
    store = await IndexStore.open(path)
    try:
        batch = [
            Record(TOPIC, 0, n, 0, records.record_key(slot), records.record_value(value))
            for n, (slot, value) in enumerate(applied)
        ]
        superseded: list[Superseded] = []
        bounds = sorted({0, len(batch), *(c % (len(batch) + 1) for c in cuts)})
        for start, end in itertools.pairwise(bounds):
            found, positions = await store.fold(batch[start:end], SUPERSEDING)
            await store.commit(positions)
            superseded += found
        conn = store._conn
        async with conn.execute(
            "SELECT app_id, fingerprint, device_id, version FROM token_seen"
        ) as c:
            seen = {(a, f, d): v for a, f, d, v in await c.fetchall()}
        async with conn.execute(
            "SELECT app_id, fingerprint, device_id, registration, registered_at FROM token_holders"
        ) as c:
            holders = {(a, f): Holder(d, r, t) for a, f, d, r, t in await c.fetchall()}
        return seen, holders, superseded
    finally:
        await store.close()


@given(ops, st.lists(st.integers(0, 40), max_size=4))
def test_given_any_records_in_any_batches_then_the_index_is_as_one_at_a_time(
    applied: list[Op], cuts: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        got = asyncio.run(folded(applied, cuts, Path(scratch) / "index.sqlite"))
    assert got == one_at_a_time(applied)
