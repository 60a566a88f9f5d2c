"""The token lifecycle rules, pure: provider feedback, supersede, forget (docs/design.md §4)."""

from __future__ import annotations

from events import (
    DeviceForgotten,
    DeviceSuperseded,
    ForgetDevice,
    ReportRejectedToken,
    SupersedeDevice,
    TokenRejected,
    rules,
)
from tests.unit.domain import (
    APP,
    DEVICE,
    HOUR,
    NOW,
    Registry,
    assert_rejected,
    device_registered,
    register,
)

SEALED_OLD = "sealed:1:1700000000000-00aa:b2xkLXRva2Vu"  # a key created before NOW - HOUR
SEALED_NEW = "sealed:1:1760000000000-00bb:bmV3LXRva2Vu"  # a key created after


def report(
    command_id: str = "fb-1", *, token: str = "token-1", sent_at: int = NOW
) -> ReportRejectedToken:
    return ReportRejectedToken(
        command_id=command_id,
        app_id=APP,
        device_id=DEVICE,
        device_token=token,
        provider="apns",
        reason="BadDeviceToken",
        sent_at=sent_at,
    )


def forget(command_id: str = "forget-1") -> ForgetDevice:
    return ForgetDevice(command_id=command_id, app_id=APP, device_id=DEVICE)


def test_given_a_report_for_the_current_token_sent_after_registration_then_device_removed() -> None:
    # Given
    registry = Registry()
    registry.accepted(register(channels=("a", "b")), NOW - HOUR)

    # When
    [event] = registry.accepted(report(sent_at=NOW - 1))

    # Then: removed, every channel, and the event keeps why.
    assert isinstance(event, TokenRejected)
    assert (event.channels, event.reason, event.provider, event.sent_at) == (
        ("a", "b"),
        "BadDeviceToken",
        "apns",
        NOW - 1,
    )
    assert not registry.state().exists


def test_given_the_device_registered_again_after_the_push_then_the_report_is_ignored() -> None:
    # Given: the push went out, then the device registered again (same token).
    registry = Registry()
    registry.accepted(register(), NOW - HOUR)
    registry.accepted(register("reg-2"), NOW - 10)

    # When
    decision = registry.run(report(sent_at=NOW - 20))

    # Then
    assert decision.events == ()
    assert decision.outcome.accepted
    assert "registered again" in (decision.outcome.note or "")
    assert registry.state().exists


def test_given_the_device_holds_another_token_then_the_report_is_ignored() -> None:
    registry = Registry()
    registry.accepted(register(device_token="token-2"), NOW - HOUR)

    decision = registry.run(report(token="token-1"))

    assert decision.events == ()
    assert "no longer holds this token" in (decision.outcome.note or "")


def test_given_an_unregistered_device_then_the_report_is_ignored() -> None:
    decision = Registry().run(report())

    assert decision.events == ()
    assert decision.outcome.accepted
    assert "not registered" in (decision.outcome.note or "")


def test_given_a_supersede_naming_the_current_registration_then_the_device_is_superseded() -> None:
    registry = Registry()
    registered = device_registered(registry.accepted(register(), NOW - HOUR))

    [event] = registry.accepted(
        SupersedeDevice(
            command_id="sup-1",
            app_id=APP,
            device_id=DEVICE,
            by_device_id="newer",
            claim=registered.event_id,
        )
    )

    assert isinstance(event, DeviceSuperseded)
    assert event.by_device_id == "newer"
    assert not registry.state().exists


def test_given_a_supersede_naming_an_older_registration_then_it_is_ignored() -> None:
    registry = Registry()
    first = device_registered(registry.accepted(register(), NOW - HOUR))
    registry.accepted(register("reg-2"), NOW - 10)  # the device registered again since

    decision = registry.run(
        SupersedeDevice(
            command_id="sup-1", app_id=APP, device_id=DEVICE, by_device_id="x", claim=first.event_id
        )
    )

    assert decision.events == ()
    assert registry.state().exists


def test_given_a_forget_then_the_token_leaves_the_state_and_the_chain_goes_on() -> None:
    registry = Registry()
    registry.accepted(register(device_token=SEALED_OLD, channels=("a",)), NOW - HOUR)

    [event] = registry.accepted(forget())

    assert isinstance(event, DeviceForgotten)
    assert event.channels == ("a",)
    assert event.version == 2
    state = registry.state()
    assert (state.device_token, state.channels, state.forgotten_at) == ("", {}, NOW)
    # A second forget has nothing left to erase.
    assert registry.run(forget("forget-2")).events == ()


def test_given_a_registration_sealed_before_the_forget_then_it_is_refused() -> None:
    # Given: forgotten at NOW; a registration sealed with a key from before is still in flight.
    registry = Registry()
    registry.accepted(register(device_token=SEALED_OLD), NOW - HOUR)
    registry.accepted(forget())

    # When / Then: refused (its key is erased), while one sealed with a new key is accepted.
    stale = registry.run(register("reg-late", device_token=SEALED_OLD), NOW + 1)
    assert not stale.outcome.accepted
    assert stale.outcome.code == rules.INVALID_REGISTRATION
    assert registry.accepted(register("reg-new", device_token=SEALED_NEW), NOW + 2)


def test_given_a_never_registered_device_then_forget_is_rejected() -> None:
    assert_rejected(Registry().run(forget()), rules.UNKNOWN_DEVICE_DELETE)
