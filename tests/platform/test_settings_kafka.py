"""ResearchSettings' Kafka login: read from QFRAME_KAFKA_*, turned into librdkafka settings, never printed."""

from __future__ import annotations

import pytest
from qframe.research.data_lake.kafka_stream import client_auth
from qframe.research.settings import ResearchSettings, SettingsError

pytestmark = pytest.mark.unit

LOGIN = {"QFRAME_KAFKA_USERNAME": "research", "QFRAME_KAFKA_PASSWORD": "s3cr3t-value"}


def test_a_username_and_password_make_a_scram_login() -> None:
    settings = ResearchSettings.from_env({**LOGIN, "QFRAME_KAFKA_BOOTSTRAP_SERVERS": "kafka.qframe.svc:9092"})
    assert settings.kafka_bootstrap_servers == "kafka.qframe.svc:9092"
    assert settings.kafka_client_config() == {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "research",
        "sasl.password": "s3cr3t-value",
    }


def test_tls_and_another_mechanism_are_passed_through() -> None:
    env = {
        **LOGIN,
        "QFRAME_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "QFRAME_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "QFRAME_KAFKA_SSL_CA_LOCATION": "/etc/ssl/kafka-ca.pem",
    }
    config = ResearchSettings.from_env(env).kafka_client_config()
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanisms"] == "SCRAM-SHA-256"
    assert config["ssl.ca.location"] == "/etc/ssl/kafka-ca.pem"


def test_no_login_means_plaintext() -> None:
    assert ResearchSettings.from_env({}).kafka_client_config() == {"security.protocol": "PLAINTEXT"}


def test_the_password_is_never_in_the_settings_repr() -> None:
    settings = ResearchSettings.from_env(LOGIN)
    assert "s3cr3t-value" not in repr(settings)
    assert "s3cr3t-value" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"QFRAME_KAFKA_USERNAME": "research"}, "QFRAME_KAFKA_PASSWORD is unset"),
        ({"QFRAME_KAFKA_PASSWORD": "x"}, "QFRAME_KAFKA_USERNAME is unset"),
        ({"QFRAME_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "needs QFRAME_KAFKA_USERNAME"),
        ({**LOGIN, "QFRAME_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, "would send no login"),
        ({**LOGIN, "QFRAME_KAFKA_SASL_MECHANISM": "GSSAPI"}, "QFRAME_KAFKA_SASL_MECHANISM"),
    ],
)
def test_an_incomplete_or_contradictory_login_is_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named) as caught:
        ResearchSettings.from_env(env)
    assert "s3cr3t-value" not in str(caught.value)


def test_clients_take_the_login_from_the_environment_unless_given_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in LOGIN.items():
        monkeypatch.setenv(key, value)
    assert client_auth(None)["sasl.username"] == "research"
    assert client_auth({"security.protocol": "PLAINTEXT"}) == {"security.protocol": "PLAINTEXT"}
