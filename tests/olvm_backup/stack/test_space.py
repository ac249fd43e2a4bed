"""Room on the embedded store's disk: known only for the store a running stack serves from this data dir."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import pytest

from olvm_backup.config import S3Settings, Settings
from olvm_backup.errors import StoreFull
from olvm_backup.stack.space import check_room, room


def _stack_file(settings: Settings, pid: int) -> None:
    run = settings.data_dir / "run"
    run.mkdir(parents=True)
    (run / "stack.json").write_text(json.dumps({"pid": pid, "s3": settings.s3.endpoint_url, "processes": {},
                                                "objects": str(settings.data_dir / "objects")}))


def test_a_backup_larger_than_the_embedded_stores_free_space_is_refused(tmp_path):
    settings = Settings(data_dir=tmp_path, s3=S3Settings(endpoint_url="http://127.0.0.1:19555"))
    (tmp_path / "objects").mkdir()
    free = shutil.disk_usage(tmp_path / "objects").free
    _stack_file(settings, os.getpid())  # a stack that runs (this process stands in for `up`)

    check_room(settings, free // 2)
    with pytest.raises(StoreFull, match=r"^the object store's disk is full \(.* MiB free in .*objects, less than"):
        check_room(settings, free + 1024 ** 3)
    where, fits, says = room(settings)
    assert where == str(tmp_path / "objects") and fits and says.endswith(" GiB free")

    # Another store (MinIO, AWS...) says nothing of its disks: nothing to check, nothing to show.
    elsewhere = dataclasses.replace(settings, s3=S3Settings(endpoint_url="http://minio.lan:9000"))
    check_room(elsewhere, free + 1024 ** 3)
    assert room(elsewhere) is None


def test_a_stack_that_no_longer_runs_tells_nothing(tmp_path):
    settings = Settings(data_dir=tmp_path, s3=S3Settings(endpoint_url="http://127.0.0.1:19555"))
    _stack_file(settings, 2 ** 22 + 7)  # above pid_max's default: no such process
    check_room(settings, 1 << 60)
    assert room(settings) is None
