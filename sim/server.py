"""`olvm-sim serve`: the engine, its SSO, both imageio daemons and the exports, until SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import signal
import ssl
from pathlib import Path

from aiohttp import web

from . import inventory, procs
from .admin import PREFIX as ADMIN_PREFIX, Admin
from .dataplane import guestfs
from .dataplane.pki import Pki, ensure_pki
from .dataplane.plane import DataPlane
from .dataplane.storage import DiskStore
from .engine.api import API, Api
from .engine.engine import BACKUP_RUNNING, TRANSFER_DONE, Engine
from .engine.state import State
from .engine.transitions import DEFAULT_STATE_DELAY, settle
from .guestssh import GuestSsh

log = logging.getLogger(__name__)
USERNAME = "admin@internal"


async def _recover(engine: Engine) -> None:
    """After a crash or restart: what was running on the old engine ends as failed, nothing stays locked."""
    for x in engine.state.table("transfers").values():
        if x["phase"] not in TRANSFER_DONE:
            x.update(phase="finished_failure", transfer_url=None, proxy_url=None)
            engine._unlock_disk_after_transfer(x)
    for b in engine.state.table("backups").values():
        if b["phase"] in BACKUP_RUNNING:
            await engine._fail_backup(engine.state.get("vms", b["vm_id"]), b, "the engine restarted")
    for d in engine.state.table("disks").values():
        if d["status"] == "locked":
            d["status"] = "ok" if engine.store.exists(d["id"]) else "illegal"
    for s in engine.state.table("snapshots").values():
        if s["status"] in ("locked", "in_preview"):
            s["status"] = "ok"
        s.update(op=None, cloning=0)  # no creation, removal, restore or copy runs any more
    settle(engine.state)
    engine.state.save()


async def _seed(engine: Engine, inventory_file: Path | None) -> None:
    inv = inventory.load(inventory_file) if inventory_file else {}
    seeds = inventory.apply(engine, inv)
    for disk_id, content in seeds:
        disk = engine.state.get("disks", disk_id)
        await asyncio.to_thread(engine.store.create, disk_id, disk["provisioned_size"], disk["format"])
        await asyncio.to_thread(engine.store.seed, disk_id, [c for c in content if "filesystems" not in c])
        for layout in [c["filesystems"] for c in content if "filesystems" in c]:
            await asyncio.to_thread(guestfs.seed, engine.store, disk_id, layout)
    engine.state.event(9000, f"olvm-sim seeded {len(engine.state.table('vms'))} VMs from "
                             f"{inventory_file or 'an empty inventory'}.")
    engine.state.save()


async def serve(data: Path, inventory_file: Path | None, port: int = 0, *, password: str | None = None,
                cert_hosts: tuple[str, ...] = (), serve_cert: tuple[Path, Path, Path | None] | None = None,
                state_delay: float = DEFAULT_STATE_DELAY) -> None:
    """`password`: the admin password to use (else the kept or a random one); `cert_hosts`: extra names for the
    generated server certificate; `serve_cert`: (certificate, key, CA) the engine serves instead of the generated;
    `state_delay`: seconds a VM stays powering up/down and a snapshot locked (--state-delay)."""
    data = data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    conn_file = data / "connection.json"
    conn_file.unlink(missing_ok=True)
    pki = ensure_pki(data / "pki", cert_hosts)
    engine_pki = pki if serve_cert is None else Pki(*((serve_cert[2] or serve_cert[0]), serve_cert[0], serve_cert[1]))
    state = State(data / "state.json")
    fresh = state.fresh
    creds = state.data["credentials"]
    if not creds:
        creds.update(username=USERNAME, password=secrets.token_urlsafe(12))
    if password:
        creds["password"] = password
    store = DiskStore(data / "images")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with DataPlane(data / "imageio", pki) as plane:
        engine = Engine(state, store, plane)
        engine.state_delay = state_delay
        runner = None
        guest_ssh: GuestSsh | None = None
        try:
            if fresh:
                await _seed(engine, inventory_file)
            else:
                await _recover(engine)
            api = Api(engine, creds["username"], creds["password"])
            app = api.app()
            guest_ssh = GuestSsh(engine, data / "ssh")
            Admin(engine, creds["password"], guest_ssh).install(app)
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(engine_pki.cert_file, engine_pki.key_file)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            port = port or procs.free_port()
            await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
            base = f"https://127.0.0.1:{port}"
            connection = {"url": base + API, "username": creds["username"], "password": creds["password"],
                          "ca_file": str(engine_pki.ca_file), "admin_url": base + ADMIN_PREFIX,
                          "imageio_host": plane.host_url, "imageio_proxy": plane.proxy_url}
            tmp = conn_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(connection, indent=1))
            tmp.chmod(0o600)
            tmp.replace(conn_file)
            print(f"olvm-sim: engine API   {connection['url']}\n"
                  f"olvm-sim: credentials  {creds['username']} / (password in {conn_file})\n"
                  f"olvm-sim: CA file      {engine_pki.ca_file}\n"
                  f"olvm-sim: imageio      host {plane.host_url}, proxy {plane.proxy_url}\n"
                  f"olvm-sim: state in {data}; Ctrl-C stops", flush=True)
            await stop.wait()
        finally:
            conn_file.unlink(missing_ok=True)
            if runner is not None:
                with contextlib.suppress(Exception):
                    await runner.cleanup()
            if guest_ssh is not None:
                await guest_ssh.close()
            await engine.close()
    print("olvm-sim: stopped", flush=True)
