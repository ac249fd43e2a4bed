"""The host's imageio daemon out of reach (a firewall between the backup machine and the host): backups and
restores move the data through the engine's imageio proxy instead, byte for byte, and leave the engine clean."""
from __future__ import annotations

import pytest

from .conftest import IMAGEIO_LOGGED, IMAGEIO_PATH
from .test_cbt_backup import backup, exported_hash, restore_points

OTHERS = ("--exclude", "app1_os", "--exclude", "app1_scratch")  # the small data disk alone: quick


@pytest.mark.data_path
def test_with_the_host_out_of_reach_data_goes_through_the_proxy(pipeline, admin, engine_view, tmp_path):
    admin.fault("host-unreachable", count=10)
    admin.write("app1", "app1_data", 1024 * 1024, 256 * 1024, seed=77)
    expected = admin.checksum("app1", "app1_data")
    backup(pipeline, "app1", "--mode", "full", *OTHERS)
    [point] = restore_points(pipeline, "app1")
    assert exported_hash(pipeline, tmp_path, point["backup_id"], "app1_data") == expected
    through_proxy = IMAGEIO_LOGGED[IMAGEIO_PATH] + " through the proxy"
    assert pipeline.data_paths("reader") == {through_proxy}

    r = pipeline.cli("restore", point["backup_id"], "--name", "app1-via-proxy", "--disk", "app1_data", "--wait")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert admin.checksum("app1-via-proxy", "app1_data") == expected
    assert pipeline.data_paths("restorer") == {through_proxy}
    assert engine_view.leftovers() == []
