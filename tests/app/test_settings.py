from pathlib import Path

import pytest

from app.settings import Settings, SettingsError


def test_defaults_use_embedded_sqlite_under_var() -> None:
    s = Settings.from_env({})
    assert s.database_url == "sqlite://var/onceonly.sqlite3"
    assert s.database_kind == "sqlite"
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.base_url == "http://127.0.0.1:8000"
    assert s.demo is False
    assert s.secrets_dir == Path("var/secrets")


def test_reads_only_prefixed_variables() -> None:
    s = Settings.from_env(
        {
            "ONCEONLY_DATABASE_URL": "postgres://u@db.example:5433/onceonly",
            "ONCEONLY_PORT": "9000",
            "ONCEONLY_DEMO": "yes",
            "DATABASE_URL": "sqlite://ignored",
            "PORT": "1",
        }
    )
    assert s.database_kind == "postgres"
    assert s.port == 9000
    assert s.demo is True
    assert s.base_url == "http://127.0.0.1:9000"


def test_var_dir_moves_the_default_database() -> None:
    s = Settings.from_env({"ONCEONLY_VAR_DIR": "/srv/onceonly"})
    assert s.database_url == "sqlite:///srv/onceonly/onceonly.sqlite3"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORT", "eighty", "ONCEONLY_PORT must be a number"),
        ("PORT", "0", "ONCEONLY_PORT must be a number"),
        ("PORT", "70000", "ONCEONLY_PORT must be a number"),
        ("DEMO", "maybe", "ONCEONLY_DEMO must be true or false"),
        ("DATABASE_URL", "mysql://root@localhost/x", "must start with sqlite://"),
        ("DATABASE_URL", "postgres://", "needs a host name"),
        ("DATABASE_URL", "postgres://db.example:99999/x", "bad port"),
        ("DATABASE_URL", "postgres://db.example", "needs a database name"),
        ("DATABASE_URL", "sqlite://", "needs a file path"),
        ("BASE_URL", "ftp://x", r"ONCEONLY_BASE_URL must be an http\(s\) URL"),
        ("LOG_LEVEL", "loud", "ONCEONLY_LOG_LEVEL"),
        ("LOG_ORIGIN", "has space", "ONCEONLY_LOG_ORIGIN"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({f"ONCEONLY_{name}": value})


def test_password_is_not_repeated_in_errors() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"ONCEONLY_DATABASE_URL": "mysql://root:hunter2@db/x"})
    assert "hunter2" not in str(info.value)
