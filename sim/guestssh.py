"""Each VM's SSH endpoint, as the guest's sshd would be: an asyncssh server in the simulator's process.

Started for a VM on the first admin call that asks for it (SimAdmin.guest_ssh): 127.0.0.1 on a port of its own,
with a host key of its own kept under DIR/ssh (the same key after a restart: known-hosts entries stay valid).
Public-key login only, for the keys the admin authorized on that VM. Only a running VM (`up`) answers: a connection
to one that is not is dropped before the handshake, as nothing listens in a guest that is down.

Nothing runs on the simulator's machine: a command is recorded (its text, user, environment, time) and answered
as the VM's behaviours say (the first matching rule: exit code, stdout, stderr, hang until the client gives up),
exit 0 with no output when none matches.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import asyncssh

HOST = "127.0.0.1"


class _Endpoint:
    def __init__(self, vm_id: str, key: asyncssh.SSHKey) -> None:
        self.vm_id = vm_id
        self.key = key
        self.authorized: list[asyncssh.SSHKey] = []
        self.rules: list[dict] = []
        self.log: list[dict] = []
        self.server: asyncssh.SSHAcceptor | None = None
        self.port = 0

    @property
    def host_key(self) -> str:
        return self.key.export_public_key("openssh").decode().strip()


class GuestSsh:
    def __init__(self, engine, data_dir: Path) -> None:
        self.engine = engine
        self.dir = data_dir
        self.endpoints: dict[str, _Endpoint] = {}
        self._lock = asyncio.Lock()

    async def endpoint(self, vm: dict) -> dict:
        """The VM's endpoint, started if it was not: host, port, host key and its known-hosts line."""
        async with self._lock:
            ep = self.endpoints.get(vm["id"])
            if ep is None:
                ep = _Endpoint(vm["id"], await asyncio.to_thread(self._host_key, vm["id"]))
                ep.server = await asyncssh.create_server(
                    lambda: _Server(self, ep), HOST, 0, server_host_keys=[ep.key],
                    process_factory=lambda process: self._answer(ep, process), allow_scp=False,
                    sftp_factory=None, agent_forwarding=False, x509_trusted_certs=None)
                ep.port = ep.server.sockets[0].getsockname()[1]
                self.endpoints[vm["id"]] = ep
        return {"vm": vm["name"], "host": HOST, "port": ep.port, "host_key": ep.host_key,
                "known_hosts": f"[{HOST}]:{ep.port} {ep.host_key}"}

    def _host_key(self, vm_id: str) -> asyncssh.SSHKey:
        path = self.dir / f"{vm_id}.host_key"
        if path.exists():
            return asyncssh.read_private_key(str(path))
        self.dir.mkdir(parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(path))
        path.chmod(0o600)
        return key

    def get(self, vm: dict) -> _Endpoint:
        ep = self.endpoints.get(vm["id"])
        if ep is None:
            raise KeyError(f"VM {vm['name']} has no SSH endpoint yet (ask for it first)")
        return ep

    def authorize(self, vm: dict, public_key: str) -> None:
        self.get(vm).authorized.append(asyncssh.import_public_key(public_key))

    def behave(self, vm: dict, rule: dict | None) -> None:
        """Add a rule (None: forget them all). Rule: match (a substring of the command; '' any), exit, stdout,
        stderr, hang (seconds; 0 none; a large number: until the client gives up), count (how many commands it
        answers; None: every one)."""
        ep = self.get(vm)
        if rule is None:
            ep.rules.clear()
        else:
            ep.rules.append({"match": "", "exit": 0, "stdout": "", "stderr": "", "hang": 0.0, "count": None, **rule})

    def records(self, vm: dict) -> list[dict]:
        ep = self.endpoints.get(vm["id"])
        return list(ep.log) if ep else []

    def _rule(self, ep: _Endpoint, command: str) -> dict:
        for rule in ep.rules:
            if rule["match"] in command and rule["count"] != 0:
                if rule["count"] is not None:
                    rule["count"] -= 1
                return rule
        return {"exit": 0, "stdout": "", "stderr": "", "hang": 0.0}

    async def _answer(self, ep: _Endpoint, process: asyncssh.SSHServerProcess) -> None:
        command = process.command or ""
        record = {"command": command, "user": process.get_extra_info("username"), "env": dict(process.env),
                  "at": time.time(), "ended_at": None, "exit": None, "ended": ""}
        ep.log.append(record)
        rule = self._rule(ep, command)
        try:
            if rule["stdout"]:
                process.stdout.write(str(rule["stdout"]))
            if rule["stderr"]:
                process.stderr.write(str(rule["stderr"]))
            if rule["hang"]:
                closed = asyncio.ensure_future(process.wait_closed())
                await asyncio.wait([closed], timeout=float(rule["hang"]))
                if closed.done():
                    record.update(ended="closed by the client", ended_at=time.time())
                    return
                closed.cancel()
            record.update(exit=int(rule["exit"]), ended="exited", ended_at=time.time())
            process.exit(int(rule["exit"]))
        except (asyncssh.Error, OSError, BrokenPipeError):
            record.update(ended="closed by the client", ended_at=time.time())

    async def close(self) -> None:
        for ep in self.endpoints.values():
            if ep.server is not None:
                ep.server.close()
                with contextlib.suppress(Exception):
                    await ep.server.wait_closed()
        self.endpoints.clear()


class _Server(asyncssh.SSHServer):
    def __init__(self, owner: GuestSsh, ep: _Endpoint) -> None:
        self.owner = owner
        self.ep = ep

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        vm = self.owner.engine.state.table("vms").get(self.ep.vm_id)
        if vm is None or vm["status"] != "up":
            conn.abort()  # a guest that is down has no sshd

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return any(key.public_data == k.public_data for k in self.ep.authorized)
