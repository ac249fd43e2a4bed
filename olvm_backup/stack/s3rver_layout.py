"""Objects an earlier embedded store (s3rver, up to 0cc43b9) left under the objects directory, moved to the layout
the embedded store now serves: one plain file per object at BUCKET/KEY.

s3rver kept each object as `KEY._S3rver_object` beside `KEY._S3rver_object.md5` and `KEY._S3rver_metadata.json`,
and unfinished multipart uploads under `BUCKET/._S3rver_uploads`. Without this, an installation upgraded in place
would list none of its earlier backups. Idempotent: a second run finds nothing to move.
"""
from __future__ import annotations

import shutil
from pathlib import Path

OBJECT_SUFFIX = "._S3rver_object"
SIDE_FILES = (OBJECT_SUFFIX + ".md5", "._S3rver_metadata.json")
UPLOADS_DIR = "._S3rver_uploads"


def adopt_s3rver_objects(directory: Path) -> int:
    """Renames every s3rver object file to its key and drops s3rver's side files; returns how many objects moved.

    An object whose plain file already exists is left as it is (the plain one is newer: it was written by the
    current store), and its s3rver copy removed.
    """
    if not directory.is_dir():
        return 0
    moved = 0
    for uploads in list(directory.glob(f"*/{UPLOADS_DIR}")):
        shutil.rmtree(uploads, ignore_errors=True)  # unfinished uploads: never part of a committed backup
    for stored in list(directory.rglob(f"*{OBJECT_SUFFIX}")):
        key_path = stored.with_name(stored.name[: -len(OBJECT_SUFFIX)])
        if key_path.exists():
            stored.unlink()
        else:
            stored.rename(key_path)
            moved += 1
    for suffix in SIDE_FILES:
        for side in list(directory.rglob(f"*{suffix}")):
            side.unlink()
    return moved
