"""Every setting's range or shape, checked at load with the setting named; files checked when a service starts."""
from __future__ import annotations

import pytest

from olvm_backup.config import Settings, _leaves, check_files, free_form, host_ports, load_settings
from olvm_backup.errors import ConfigError

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

# One value per checked setting that its check must refuse, and words the message must hold besides its name.
BAD = [
    ("OLVM_LOG_LEVEL", "LOUD", "DEBUG, INFO, WARNING, ERROR"),
    ("OLVM_KAFKA_BOOTSTRAP", "kafka:port", "HOST:PORT"),
    ("OLVM_KAFKA_TOPIC_PREFIX", "my prefix/", "letters, digits"),
    ("OLVM_KAFKA_REPLICATION", "0", "more than 0"),
    ("OLVM_KAFKA_PARTITIONS", "-2", "more than 0"),
    ("OLVM_KAFKA_FETCH_WAIT_MS", "-1", "at least 0"),
    ("OLVM_S3_ENDPOINT", "minio:9000", "http://HOST"),
    ("OLVM_S3_BUCKET", "my bucket", "bucket name"),
    ("OLVM_S3_REGION", "", "region"),
    ("OLVM_ENGINE_URL", "engine.example.com/ovirt-engine/api", "https://HOST"),
    ("OLVM_ENGINE_USER", "", "user name"),
    ("OLVM_CHUNK_SIZE", "1000", "4096 to 4194304 bytes and a multiple of 4096"),
    ("OLVM_TASK_SIZE", "0", "more than 0"),
    ("OLVM_WAVE_BYTES", "-5", "more than 0"),
    ("OLVM_WAVES_IN_FLIGHT", "0", "more than 0"),
    ("OLVM_STALL_TIMEOUT", "-1", "more than 0"),
    ("OLVM_PACK_SIZE", "0", "more than 0"),
    ("OLVM_OBJECT_LOCK_DAYS", "-1", "at least 0"),
    ("OLVM_GC_REPACK_BELOW", "1.5", "from 0 up to"),
    ("OLVM_OBJECT_LOCK_MODE", "forever", "GOVERNANCE, COMPLIANCE"),
    ("OLVM_GC_GRACE", "600", "at least 3600"),
    ("OLVM_GC_SCHEDULE", "every night", "cron expression"),
    ("OLVM_SCHEDULER_SESSION_TIMEOUT_MS", "500", "at least 1000"),
    ("OLVM_SCHEDULER_TICK", "0", "more than 0"),
    ("OLVM_SCHEDULER_EVENT_POLL", "0", "more than 0"),
    ("OLVM_SCHEDULER_CLOCK_START", "yesterday", "ISO 8601"),
    ("OLVM_SCHEDULER_CLOCK_SPEED", "-60", "more than 0"),
    ("OLVM_SCHEDULER_CLOCK_EPOCH", "2024-13-01", "ISO 8601"),
    ("OLVM_METRICS_PORT", "70000", "TCP port"),
    ("OLVM_METRICS_HOST", "0.0.0.0/0", "host name or an IP address"),
    ("OLVM_METRICS_BASE_PORT", "-1", "TCP port"),
    ("OLVM_METRICS_LAG_INTERVAL", "0", "more than 0"),
    ("OLVM_ACCESS_CACHE_MB", "2", "at least 4"),
    ("OLVM_ACCESS_READAHEAD_MB", "-1", "at least 0"),
    ("OLVM_API_HOST", "0.0.0.0/0", "host name or an IP address"),
    ("OLVM_API_PORT", "70000", "TCP port"),
    ("OLVM_API_SESSION_TTL", "30", "at least 60"),
    ("OLVM_API_LOGIN_ATTEMPTS", "0", "more than 0"),
    ("OLVM_API_LOGIN_LOCKOUT", "-5", "more than 0"),
    ("OLVM_API_ENGINE_USERS", "admin=root", "USER@PROFILE=ROLE"),
]
# Checked when a service or `up` starts (check_files), not at load.
ON_START = {"OLVM_ENGINE_CA_FILE", "OLVM_REPOSITORY_PASSWORD_FILE", "OLVM_REPOSITORY_KEY_FILE", "OLVM_API_TLS_CERT",
            "OLVM_API_TLS_KEY"}


def _checks() -> dict[str, object]:
    return {f.metadata["env"]: f.metadata["check"] for f, _ in _leaves(Settings())}


def test_every_setting_declares_its_check_or_that_it_is_free_form():
    missing = [env for env, check in _checks().items() if not callable(check)]
    assert missing == [], f"give these settings a check= (or check=free_form): {missing}"


def test_every_checked_setting_is_tried_with_a_bad_value_here():
    checked = {env for env, check in _checks().items() if check is not free_form}
    assert checked == {env for env, _, _ in BAD} | ON_START


def test_the_defaults_pass():
    settings = load_settings(environ={})
    check_files(settings)


@pytest.mark.parametrize("env, value, words", BAD, ids=[b[0] for b in BAD])
def test_a_value_out_of_range_or_shape_names_its_setting(env, value, words):
    with pytest.raises(ConfigError) as e:
        load_settings(environ={env: value})
    assert env in str(e.value) and words in str(e.value)


def test_a_bad_value_in_the_file_names_its_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("pipeline:\n  stall_timeout: 0\n")
    with pytest.raises(ConfigError, match="pipeline.stall_timeout: must be more than 0"):
        load_settings(f, environ={})


def test_a_number_that_is_not_one_says_so():
    with pytest.raises(ConfigError, match="OLVM_PACK_SIZE: must be a whole number, not '64M'"):
        load_settings(environ={"OLVM_PACK_SIZE": "64M"})


@pytest.mark.parametrize("env, value", [
    ("OLVM_LOG_LEVEL", "debug"), ("OLVM_S3_ENDPOINT", ""), ("OLVM_S3_ENDPOINT", "https://objectstorage.example:443"),
    ("OLVM_KAFKA_BOOTSTRAP", "k1:9092, k2:9093,[::1]:9094,k4"), ("OLVM_ENGINE_URL", "https://e.example/ovirt-engine/api"),
    ("OLVM_CHUNK_SIZE", str(64 << 10)), ("OLVM_STALL_TIMEOUT", "0.5"),
])
def test_good_values_pass(env, value):
    load_settings(environ={env: value})


def test_bootstrap_addresses_parse():
    assert host_ports("k1:9092, [::1]:9094,k4") == [("k1", 9092), ("::1", 9094), ("k4", 9092)]
    for bad in ("", "k1:", "k1:99999", "http://k1:9092", "k1:9092,"):
        with pytest.raises(ValueError):
            host_ports(bad)


def test_a_missing_ca_file_is_named_with_its_setting_when_a_service_starts(tmp_path):
    missing = tmp_path / "nowhere" / "ca.pem"
    settings = load_settings(environ={"OLVM_ENGINE_CA_FILE": str(missing)})  # `config` still shows it
    with pytest.raises(ConfigError) as e:
        check_files(settings)
    assert "OLVM_ENGINE_CA_FILE" in str(e.value) and str(missing) in str(e.value)


def test_a_ca_file_without_a_certificate_is_refused(tmp_path):
    bad, good = tmp_path / "bad.pem", tmp_path / "good.pem"
    bad.write_text("not a certificate\n")
    good.write_text(PEM)
    with pytest.raises(ConfigError, match=f"OLVM_ENGINE_CA_FILE: {bad} holds no PEM certificate"):
        check_files(load_settings(environ={"OLVM_ENGINE_CA_FILE": str(bad)}))
    check_files(load_settings(environ={"OLVM_ENGINE_CA_FILE": str(good)}))


@pytest.mark.parametrize("env", ["OLVM_REPOSITORY_PASSWORD_FILE", "OLVM_REPOSITORY_KEY_FILE"])
def test_a_repository_key_file_that_cannot_be_read_names_its_setting_at_start(env, tmp_path):
    missing = tmp_path / "no-such-file"
    settings = load_settings(environ={env: str(missing)})
    with pytest.raises(ConfigError) as e:
        check_files(settings)
    assert env in str(e.value) and str(missing) in str(e.value)
