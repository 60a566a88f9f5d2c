"""Merging projection files (projections/merge.py) on real SQLite files: rows of disjoint
partitions are copied; anything else fails loudly instead of merging into a wrong file."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from projections.merge import MergeError, merge_into
from projections.store import ProjectionStore
from tests.projections.test_projection_store import history, records


async def folded(path: Path) -> Path:
    store = await ProjectionStore.open(path)
    try:
        await store.apply(records(history()))
    finally:
        await store.close()
    return path


async def test_given_two_files_with_the_same_device_when_merged_then_it_fails(
    tmp_path: Path,
) -> None:
    # Given two files that both hold the device (not folded from disjoint partitions)
    target, part = await folded(tmp_path / "a.sqlite"), await folded(tmp_path / "b.sqlite")
    # When merged, then the merge refuses, naming the table
    with pytest.raises(MergeError, match="its devices overlap"):
        merge_into(target, [part])


async def test_given_a_table_without_a_merge_rule_when_merged_then_it_fails(
    tmp_path: Path,
) -> None:
    # Given a schema with a table the merge does not know (a new one, say)
    target, part = await folded(tmp_path / "a.sqlite"), tmp_path / "b.sqlite"
    for path in (target, part):
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS newcomer (x)")
    # When merged, then it fails rather than leave its rows behind
    with pytest.raises(MergeError, match="no merge rule for the tables \\['newcomer'\\]"):
        merge_into(target, [part])
