"""Configuration: one typed place, file then environment, secrets never shown."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from olvm_backup.config import describe, load_settings, settings_table, to_environ
from olvm_backup.errors import ConfigError
from olvm_backup.logs import setup_logging


def test_environment_overrides_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("kafka:\n  bootstrap_servers: k1:9092\n  partitions: 3\ns3:\n  bucket: from-file\n")
    s = load_settings(f, environ={"OLVM_S3_BUCKET": "from-env", "OLVM_ENGINE_INSECURE": "yes"})
    assert s.kafka.bootstrap_servers == "k1:9092"
    assert s.kafka.partitions == 3
    assert s.s3.bucket == "from-env"
    assert s.engine.insecure is True


@pytest.mark.parametrize("content, message", [
    ("kafka:\n  bootstrap: x\n", "unknown setting"),
    ("kafka:\n  partitions: many\n", "kafka.partitions"),
    ("- a list\n", "mapping"),
])
def test_bad_file_is_a_clear_error(tmp_path, content, message):
    f = tmp_path / "c.yaml"
    f.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings(f, environ={})


def test_secrets_are_masked_everywhere_but_child_environments(capsys):
    s = load_settings(environ={"OLVM_ENGINE_PASSWORD": "hunter2-engine", "OLVM_S3_SECRET_KEY": "s3-very-secret"})
    shown = repr(s) + str(describe(s))
    assert "hunter2-engine" not in shown and "s3-very-secret" not in shown
    assert to_environ(s)["OLVM_ENGINE_PASSWORD"] == "hunter2-engine"
    setup_logging("INFO", "test", ["hunter2-engine"])
    logging.getLogger("t").warning("login failed with password %s", "hunter2-engine")
    assert "hunter2-engine" not in capsys.readouterr().err


def test_a_deleted_wave_topic_is_not_logged_as_an_error(capsys):
    setup_logging("INFO", "test")
    cluster = logging.getLogger("aiokafka.cluster")
    cluster.error("Topic %s not found in cluster metadata", "olvm.chunks.1a2b.7")   # deleted by design
    cluster.error("Topic %s not found in cluster metadata", "olvm.backup.events")    # a real problem
    err = capsys.readouterr().err
    assert "chunks.1a2b.7" not in err
    assert "ERROR aiokafka.cluster: Topic olvm.backup.events not found" in err


def test_the_readme_documents_every_setting_as_declared():
    lines = (Path(__file__).resolve().parents[2] / "README.md").read_text().splitlines()
    start = lines.index("| variable | default | meaning |")
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    documented = "\n".join(lines[start:end]) + "\n"
    assert documented == settings_table(), "README's configuration table: paste `olvm-backup config --markdown`"
    for env, _, _ in describe(load_settings(environ={})):
        assert f"| `{env}` |" in documented
