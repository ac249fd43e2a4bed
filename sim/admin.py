"""The simulator's own back door, for tests and rehearsals: act as the guest, read disk hashes, arm faults.

It is not part of the engine API: a product never calls it. Requests carry the simulator's admin password."""
from __future__ import annotations

import asyncio

from aiohttp import web

from .dataplane import guestfs
from .engine.engine import TRANSFER_DONE, Engine
from .engine.state import NotFound
from .guestssh import GuestSsh

PREFIX = "/sim-admin"
FAULTS = {"transfer-fail": "transfer_fail", "backup-stall": "backup_stall", "engine-500": "engine_500",
          "engine-drop": "engine_drop", "backup-finalize-fail": "backup_finalize_fail", "freeze-fail": "freeze_fail",
          "checkpoint-remove-fail": "checkpoint_remove_fail", "host-unreachable": "host_unreachable",
          "snapshot-remove-fail": "snapshot_remove_fail", "answer-lost": "answer_lost"}


class Admin:
    def __init__(self, engine: Engine, password: str, guest_ssh: GuestSsh | None = None) -> None:
        self.engine = engine
        self.password = password
        self.guest_ssh = guest_ssh

    def install(self, app: web.Application) -> None:
        app.router.add_post(PREFIX + "/write", self.write)
        app.router.add_get(PREFIX + "/checksum", self.checksum)
        app.router.add_post(PREFIX + "/fault", self.fault)
        app.router.add_post(PREFIX + "/files", self.files)
        app.router.add_get(PREFIX + "/filesystems", self.filesystems)
        app.router.add_post(PREFIX + "/ssh", self.ssh)
        app.router.add_post(PREFIX + "/ssh/behave", self.ssh_behave)
        app.router.add_get(PREFIX + "/ssh/log", self.ssh_log)

    def _check(self, request: web.Request) -> None:
        if request.headers.get("X-Sim-Password") != self.password:
            raise web.HTTPUnauthorized(text="wrong or missing X-Sim-Password\n")

    def _disk(self, vm_ref: str, disk_ref: str) -> tuple[dict, dict]:
        state = self.engine.state
        try:
            vm = state.by_name("vms", vm_ref)
        except NotFound:
            raise web.HTTPNotFound(text=f"no VM {vm_ref!r}\n") from None
        for disk, _ in self.engine.vm_disks(vm["id"]):
            if disk_ref in (disk["id"], disk["name"]):
                return vm, disk
        raise web.HTTPNotFound(text=f"VM {vm['name']} has no disk {disk_ref!r}\n")

    def _guest_disk(self, body: dict) -> tuple[dict, dict]:
        """The VM and disk a guest action names, refused as the guest could not write there now."""
        vm, disk = self._disk(body["vm"], body["disk"])
        if disk["status"] == "illegal":
            raise web.HTTPConflict(text=f"disk {disk['name']} is illegal\n")
        if any(x["disk_id"] == disk["id"] and x.get("locked_disk") and x["phase"] not in TRANSFER_DONE
               for x in self.engine.state.table("transfers").values()):
            raise web.HTTPConflict(text=f"disk {disk['name']} is exported by an image transfer: the guest cannot "
                                        "write it now\n")
        if vm["status"] != "up":
            raise web.HTTPConflict(text=f"VM {vm['name']} is not running: no guest to write\n")
        return vm, disk

    async def write(self, request: web.Request) -> web.Response:
        self._check(request)
        body = await request.json()
        vm, disk = self._guest_disk(body)
        pattern = "zero" if body.get("zero") else body.get("pattern", "random")
        await asyncio.to_thread(self.engine.store.guest_write, disk["id"], int(body["offset"]), int(body["length"]),
                                body.get("seed"), pattern=pattern, text=body.get("text", ""))
        return web.json_response({"vm": vm["name"], "disk": disk["name"], "offset": body["offset"],
                                  "length": body["length"]})

    async def files(self, request: web.Request) -> web.Response:
        """The guest adds, replaces ({put: entry}) or removes ({remove: path}) one entry of a seeded file system."""
        self._check(request)
        body = await request.json()
        vm, disk = self._guest_disk(body)
        if ("put" in body) == ("remove" in body):
            raise web.HTTPBadRequest(text="give either put (an entry as in the inventory) or remove (a path)\n")
        try:
            vol = await asyncio.to_thread(guestfs.change, self.engine.store, disk["id"], str(body["volume"]),
                                          put=body.get("put"), remove=body.get("remove"))
        except (guestfs.GuestFsError, ValueError) as e:
            raise web.HTTPBadRequest(text=f"{e}\n") from None
        return web.json_response({"vm": vm["name"], "disk": disk["name"], "volume": vol["name"],
                                  "files": len(vol["files"])})

    async def filesystems(self, request: web.Request) -> web.Response:
        self._check(request)
        vm, disk = self._disk(request.query["vm"], request.query["disk"])
        try:
            layout = await asyncio.to_thread(guestfs.describe, self.engine.store, disk["id"])
        except guestfs.GuestFsError as e:
            raise web.HTTPNotFound(text=f"{e}\n") from None
        return web.json_response({"vm": vm["name"], "disk": disk["name"], **layout})

    async def checksum(self, request: web.Request) -> web.Response:
        self._check(request)
        vm, disk = self._disk(request.query["vm"], request.query["disk"])
        digest = await asyncio.to_thread(self.engine.store.content_hash, disk["id"], request.query.get("snapshot"))
        return web.json_response({"vm": vm["name"], "disk": disk["name"], "sha256": digest,
                                  "size": disk["provisioned_size"]})

    async def fault(self, request: web.Request) -> web.Response:
        self._check(request)
        body = await request.json()
        kind, count = body["kind"], int(body.get("count", 1))
        if kind == "ticket-expire":
            await self.engine.expire_tickets()
        elif kind == "drop-bitmaps":
            vm, _ = self._disk(body["vm"], body["disk"]) if body.get("disk") else (
                self.engine.state.by_name("vms", body["vm"]), None)
            await asyncio.to_thread(self.engine.drop_bitmaps, vm["id"])
        elif kind == "snapshot-hold":  # the next snapshot creation or removal stays locked this much longer
            self.engine.faults.snapshot_hold = float(body.get("seconds", count))
        elif kind in FAULTS:
            setattr(self.engine.faults, FAULTS[kind], count)
        else:
            known = ", ".join([*FAULTS, "ticket-expire", "drop-bitmaps", "snapshot-hold"])
            raise web.HTTPBadRequest(text=f"unknown fault {kind!r}; known: {known}\n")
        return web.json_response({"fault": kind, "count": count})

    # -- the guests' SSH endpoints (guestssh.py) ----------------------------------------------------------------------

    def _vm(self, ref: str) -> dict:
        try:
            return self.engine.state.by_name("vms", ref)
        except NotFound:
            raise web.HTTPNotFound(text=f"no VM {ref!r}\n") from None

    async def ssh(self, request: web.Request) -> web.Response:
        """The VM's SSH endpoint (started now if it was not), authorizing `authorize` (a public key line) first."""
        self._check(request)
        body = await request.json()
        vm = self._vm(body["vm"])
        details = await self.guest_ssh.endpoint(vm)
        if body.get("authorize"):
            try:
                self.guest_ssh.authorize(vm, body["authorize"])
            except Exception as e:
                raise web.HTTPBadRequest(text=f"not a public key: {e}\n") from None
        return web.json_response(details)

    async def ssh_behave(self, request: web.Request) -> web.Response:
        self._check(request)
        body = await request.json()
        vm = self._vm(body.pop("vm"))
        try:
            self.guest_ssh.behave(vm, None if body.pop("reset", False) else body)
        except KeyError as e:
            raise web.HTTPConflict(text=f"{e.args[0]}\n") from None
        return web.json_response({"vm": vm["name"]})

    async def ssh_log(self, request: web.Request) -> web.Response:
        self._check(request)
        vm = self._vm(request.query["vm"])
        return web.json_response({"vm": vm["name"], "commands": self.guest_ssh.records(vm)})
