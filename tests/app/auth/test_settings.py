"""The sign-in settings: defaults in and out of demo mode, and messages for bad values."""

from __future__ import annotations

import pytest

from app.settings import Settings, SettingsError

REAL = {
    "ONCEONLY_OIDC_ISSUER": "https://login.example.ca/realms/ontario",
    "ONCEONLY_OIDC_CLIENT_ID": "onceonly",
    "ONCEONLY_OIDC_CLIENT_SECRET": "s3cret",
}


def test_demo_mode_uses_the_built_in_provider() -> None:
    s = Settings.from_env({"ONCEONLY_DEMO": "true", "ONCEONLY_PORT": "9000"})
    assert s.oidc_issuer == "http://127.0.0.1:9000/dev-oidc"
    assert s.oidc_client_id == "onceonly-portal"
    assert s.oidc_client_secret is None  # generated under var/secrets on first use
    assert s.uses_dev_oidc
    assert (s.oidc_subject_claim, s.oidc_auditor_claim, s.oidc_auditor_value) == (
        "sub",
        "onceonly_role",
        "auditor",
    )
    assert (s.session_idle_minutes, s.session_max_hours) == (30, 12)


def test_without_demo_sign_in_is_off_until_configured() -> None:
    s = Settings.from_env({})
    assert s.oidc_issuer is None and s.oidc_client_id is None
    assert not s.uses_dev_oidc


def test_a_real_provider() -> None:
    s = Settings.from_env(
        {
            **REAL,
            "ONCEONLY_OIDC_SUBJECT_CLAIM": "ontario_id",
            "ONCEONLY_OIDC_AUDITOR_CLAIM": "groups",
            "ONCEONLY_OIDC_AUDITOR_VALUE": "ipc-auditors",
            "ONCEONLY_SESSION_IDLE_MINUTES": "15",
            "ONCEONLY_SESSION_MAX_HOURS": "8",
        }
    )
    assert s.oidc_issuer == REAL["ONCEONLY_OIDC_ISSUER"]
    assert s.oidc_client_secret == "s3cret"
    assert "s3cret" not in repr(s)
    assert s.oidc_subject_claim == "ontario_id"
    assert (s.oidc_auditor_claim, s.oidc_auditor_value) == ("groups", "ipc-auditors")
    assert (s.session_idle_minutes, s.session_max_hours) == (15, 8)
    assert not s.uses_dev_oidc
    assert "OIDC_ISSUER" not in s.extra


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ONCEONLY_OIDC_ISSUER": "http://login.example.ca"}, "ONCEONLY_OIDC_ISSUER must be"),
        ({"ONCEONLY_OIDC_ISSUER": "https://x.example/?a=b"}, "ONCEONLY_OIDC_ISSUER must be"),
        ({"ONCEONLY_OIDC_ISSUER": "login.example.ca"}, "ONCEONLY_OIDC_ISSUER must be"),
        ({**REAL, "ONCEONLY_OIDC_CLIENT_ID": ""}, "ONCEONLY_OIDC_CLIENT_ID is required"),
        ({**REAL, "ONCEONLY_OIDC_CLIENT_SECRET": ""}, "ONCEONLY_OIDC_CLIENT_SECRET is required"),
        ({"ONCEONLY_OIDC_SUBJECT_CLAIM": "two words"}, "ONCEONLY_OIDC_SUBJECT_CLAIM"),
        ({"ONCEONLY_SESSION_IDLE_MINUTES": "0"}, "ONCEONLY_SESSION_IDLE_MINUTES must be"),
        ({"ONCEONLY_SESSION_IDLE_MINUTES": "half"}, "ONCEONLY_SESSION_IDLE_MINUTES must be"),
        ({"ONCEONLY_SESSION_MAX_HOURS": "1000"}, "ONCEONLY_SESSION_MAX_HOURS must be"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_http_issuer_is_allowed_on_localhost() -> None:
    s = Settings.from_env({**REAL, "ONCEONLY_OIDC_ISSUER": "http://localhost:8080/realms/x"})
    assert s.oidc_issuer == "http://localhost:8080/realms/x"
