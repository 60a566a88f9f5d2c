"""The hand-rolled uuid5 (events/identity.py) is the standard library's, for any name: every id
devreg ever issued depends on it."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from events import identity


@given(st.text())
def test_uuid5_text_equals_the_standard_librarys(name: str) -> None:
    assert identity.uuid5_text(name) == str(uuid.uuid5(identity._NAMESPACE, name))


def test_registration_ids_are_upper_case_uuid5_of_app_device_and_channel() -> None:
    expected = uuid.uuid5(identity._NAMESPACE, "reg\napp\ndevice\nnews")
    assert identity.registration_id("app", "device", "news") == str(expected).upper()
