"""Console session cookies: signed, expiring, bound to a key that is still configured."""

import time

import pytest

from api.auth import Scope
from api.console.session import issue, sign_in_token, token_matches, verify
from api.settings import ApiSettings
from schemas.keys import hash_api_key

ADMIN, READ = hash_api_key("ak_unit"), hash_api_key("rk_unit")
KEY = b"k" * 32


def settings(**overrides) -> ApiSettings:
    values = {
        "env": "test",
        "token_secret": "unit-token-secret-of-at-least-32-bytes",
        "link_secret": "unit-link-secret",
        "pii_master_key": "unit-pii-master-key",
        "admin_key_hashes": frozenset({ADMIN}),
        "read_key_hashes": frozenset({READ}),
    }
    return ApiSettings(**(values | overrides))


def test_a_session_round_trips_with_its_scope_and_a_csrf_token():
    admin = verify(KEY, settings(), issue(KEY, Scope.ADMIN, ADMIN, 600))
    read = verify(KEY, settings(), issue(KEY, Scope.READ, READ, 600))
    assert admin is not None and admin.scope is Scope.ADMIN and admin.can_act
    assert read is not None and read.scope is Scope.READ and not read.can_act
    # A token per session: one session's token is not another's.
    assert admin.csrf and admin.csrf != read.csrf


def test_another_secret_or_a_changed_payload_is_refused():
    cookie = issue(KEY, Scope.READ, READ, 600)
    assert verify(b"x" * 32, settings(), cookie) is None
    payload, signature = cookie.split(".")
    # The admin key's hash in a read session's signed payload: a forged upgrade.
    forged = payload.replace("cmVhZC", "YWRtaW")
    assert forged != payload
    assert verify(KEY, settings(), f"{forged}.{signature}") is None
    assert verify(KEY, settings(), payload) is None
    assert verify(KEY, settings(), "garbage") is None


def test_a_session_expires():
    now = time.time()
    cookie = issue(KEY, Scope.ADMIN, ADMIN, 60, now=now - 61)
    assert verify(KEY, settings(), cookie) is None
    assert verify(KEY, settings(), cookie, now=now - 30) is not None


def test_removing_a_key_ends_its_sessions():
    cookie = issue(KEY, Scope.ADMIN, ADMIN, 600)
    assert verify(KEY, settings(), cookie) is not None
    assert verify(KEY, settings(admin_key_hashes=frozenset()), cookie) is None


@pytest.mark.parametrize("scope", [Scope.WRITE, Scope.SERVER])
def test_only_admin_and_read_keys_open_a_session(scope: Scope):
    key_hash = hash_api_key("other")
    cookie = issue(KEY, scope, key_hash, 600)
    assert verify(KEY, settings(**{f"{scope.value}_key_hashes": {key_hash}}), cookie) is None


def test_sign_in_tokens_are_bound_to_their_nonce():
    assert token_matches(sign_in_token(KEY, "n1"), sign_in_token(KEY, "n1"))
    assert not token_matches(sign_in_token(KEY, "n1"), sign_in_token(KEY, "n2"))
    assert not token_matches(sign_in_token(KEY, "n1"), None)
    assert not token_matches(sign_in_token(KEY, "n1"), "")
