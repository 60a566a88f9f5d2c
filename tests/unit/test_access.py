"""Keys and who they open (services/http/access.py), and how DEVREG_APPS, DEVREG_DOMAIN_APP
and DEVREG_TOKEN_KEYS are read (services/config/): errors name the app, never a key."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from events import rules
from services.config import AppKeys, ConfigError, load_settings
from services.http.access import ADMIN_HEADER, Access, Base, Keys
from services.http.wire import WireError

ADMIN = "admin-key-0123456789"
KEYS = Keys({"open": AppKeys("rest", ADMIN), "closed": AppKeys("rest2")}, domain_app="open")


def authorize(base: Base, access: Access, match: dict[str, str], admin: str | None) -> str:
    headers = {ADMIN_HEADER: admin} if admin is not None else {}
    request = make_mocked_request("GET", "/", headers=headers, match_info=match)
    return KEYS.authorize(request, base, access)


def refusal(base: Base, access: Access, match: dict[str, str], admin: str | None) -> tuple:
    with pytest.raises(WireError) as refused:
        authorize(base, access, match, admin)
    return refused.value.status, refused.value.code


def test_given_each_base_and_access_then_the_right_keys_open_it() -> None:
    classic = {"app_id": "open", "api_key": "rest"}
    assert authorize(Base.CLASSIC, Access.REST, classic, None) == "open"
    assert authorize(Base.DOMAIN, Access.REST, {}, None) == "open"
    assert authorize(Base.CLASSIC, Access.ADMIN, classic, ADMIN) == "open"
    assert authorize(Base.DOMAIN, Access.ADMIN, {}, ADMIN) == "open"
    assert authorize(Base.ADMIN, Access.ADMIN, {"app_id": "open"}, ADMIN) == "open"
    # A REST route on the admin base (a console's read) needs the admin key too
    assert authorize(Base.ADMIN, Access.REST, {"app_id": "open"}, ADMIN) == "open"
    assert refusal(Base.ADMIN, Access.REST, {"app_id": "open"}, None) == (401, 8003)


def test_given_missing_or_wrong_keys_then_401_and_403_with_their_codes() -> None:
    wrong_rest = {"app_id": "open", "api_key": "nope"}
    assert refusal(Base.CLASSIC, Access.REST, wrong_rest, ADMIN) == (401, rules.UNKNOWN_APP)
    unknown = {"app_id": "nobody", "api_key": "rest"}
    assert refusal(Base.CLASSIC, Access.REST, unknown, None) == (401, rules.UNKNOWN_APP)
    classic = {"app_id": "open", "api_key": "rest"}
    assert refusal(Base.CLASSIC, Access.ADMIN, classic, None) == (401, rules.ADMIN_KEY_REQUIRED)
    assert refusal(Base.DOMAIN, Access.ADMIN, {}, "rest") == (401, rules.ADMIN_KEY_REQUIRED)
    assert refusal(Base.ADMIN, Access.ADMIN, {"app_id": "nobody"}, ADMIN) == (401, 8003)
    # An app with no admin key: its admin routes are closed, whatever is sent
    closed = {"app_id": "closed", "api_key": "rest2"}
    assert refusal(Base.CLASSIC, Access.ADMIN, closed, ADMIN) == (403, rules.ADMIN_ROUTES_CLOSED)
    assert refusal(Base.ADMIN, Access.ADMIN, {"app_id": "closed"}, "") == (403, 8004)


def test_given_non_ascii_keys_sent_then_refused_not_an_exception() -> None:
    assert refusal(Base.DOMAIN, Access.ADMIN, {}, "clé-ü") == (401, 8003)
    odd = {"app_id": "open", "api_key": "ré\u0000st"}
    assert refusal(Base.CLASSIC, Access.REST, odd, None) == (401, 8002)


def test_given_the_domain_form_then_served_only_where_configured() -> None:
    assert Base.DOMAIN in KEYS.bases(Access.REST)
    assert Base.DOMAIN not in Keys(KEYS.apps, None).bases(Access.REST)
    assert KEYS.bases(Access.ADMIN)[0] is Base.ADMIN  # before `/{app_id}/{api_key}`
    assert KEYS.bases(Access.PUBLIC) == ()


def test_given_apps_with_and_without_admin_keys_then_read_as_such() -> None:
    settings = load_settings({"DEVREG_APPS": f"a:rest-a:{ADMIN},b:rest-b"})
    assert settings.apps == {"a": AppKeys("rest-a", ADMIN), "b": AppKeys("rest-b")}
    assert settings.domain_app is None  # off unless configured
    assert load_settings({"DEVREG_APPS": "a:r", "DEVREG_DOMAIN_APP": "a"}).domain_app == "a"
    demo = load_settings({})
    assert (demo.domain_app, demo.apps["demo-app"].rest) == ("demo-app", "demo-rest-key")
    assert "rest-a" not in repr(settings)
    assert ADMIN not in repr(settings)


@pytest.mark.parametrize(
    ("apps", "named"),
    [
        ("a:rest:short", "admin key of app 'a' is shorter"),
        ("a:rest0123456789abcdef:rest0123456789abcdef", "same REST and admin key"),
        ("api:rest", "reserved"),
        ("admin:rest", "reserved"),
        ("a:re/st", "keys of app 'a'"),
        ("a:rest:admin key with spaces", "keys of app 'a'"),
        ("a:rest,a:rest2", "twice"),
        ("a", "entry 1"),
        ("a:1:2:3", "entry 1"),
    ],
)
def test_given_bad_apps_then_the_error_names_the_app_never_a_key(apps: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named) as error:
        load_settings({"DEVREG_APPS": apps})
    assert "rest2" not in str(error.value)
    assert "key with spaces" not in str(error.value)


def test_given_a_domain_app_that_is_not_configured_then_an_error() -> None:
    with pytest.raises(ConfigError, match="DEVREG_DOMAIN_APP"):
        load_settings({"DEVREG_APPS": "a:r", "DEVREG_DOMAIN_APP": "b"})


def test_given_bad_token_keys_then_the_error_hides_them() -> None:
    for spec in ("k1:c2hvcnQ=", "k-1:" + "A" * 44, "k1:!!", "k1:" + "A" * 44 + ",k1:" + "B" * 44):
        with pytest.raises(ConfigError, match="DEVREG_TOKEN_KEYS") as error:
            load_settings({"DEVREG_TOKEN_KEYS": spec})
        assert spec.split(":", 1)[1][:10] not in str(error.value)
