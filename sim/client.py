"""Python access to a running simulator's back door (the same calls as `olvm-sim write/checksum/fault`)."""
from __future__ import annotations

import json
import ssl
import urllib.parse
import urllib.request
from pathlib import Path


class SimAdminError(RuntimeError):
    pass


class SimAdmin:
    def __init__(self, data_dir: Path | str) -> None:
        conn_file = Path(data_dir) / "connection.json"
        if not conn_file.exists():
            raise SimAdminError(f"no running simulator on {data_dir} (no connection.json)")
        self.connection = json.loads(conn_file.read_text())
        self._ssl = ssl.create_default_context(cafile=self.connection["ca_file"])

    def _call(self, method: str, path: str, body: dict | None = None, query: dict | None = None) -> dict:
        url = self.connection["admin_url"] + path + ("?" + urllib.parse.urlencode(query) if query else "")
        req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"X-Sim-Password": self.connection["password"],
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=3600) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise SimAdminError(f"{e.code}: {e.read().decode(errors='replace').strip()}") from None

    def write(self, vm: str, disk: str, offset: int, length: int, seed: int | None = None, *,
              zero: bool = False, pattern: str = "random", text: str = "") -> dict:
        return self._call("POST", "/write", {"vm": vm, "disk": disk, "offset": offset, "length": length, "seed": seed,
                                             "zero": zero, "pattern": pattern, "text": text})

    def put_file(self, vm: str, disk: str, volume: str, path: str, **entry) -> dict:
        """The guest adds or replaces a file (or dir, or symlink) in a seeded file system; entry: the inventory's
        keys (text, pattern, seed, size, mode, mtime, uid, gid, symlink, type)."""
        return self._call("POST", "/files", {"vm": vm, "disk": disk, "volume": volume,
                                             "put": {"path": path, **entry}})

    def remove_file(self, vm: str, disk: str, volume: str, path: str) -> dict:
        return self._call("POST", "/files", {"vm": vm, "disk": disk, "volume": volume, "remove": path})

    def filesystems(self, vm: str, disk: str) -> dict:
        """The disk's partition table, volumes (byte ranges, file system, LVM) and current trees with sha256s."""
        return self._call("GET", "/filesystems", query={"vm": vm, "disk": disk})

    def checksum(self, vm: str, disk: str, snapshot: str | None = None) -> str:
        query = {"vm": vm, "disk": disk, **({"snapshot": snapshot} if snapshot else {})}
        return self._call("GET", "/checksum", query=query)["sha256"]

    def guest_ssh(self, vm: str, authorize: str | None = None) -> dict:
        """The VM's SSH endpoint (started if it was not): host, port, host_key (public, OpenSSH line) and
        known_hosts (its line for a known-hosts file); `authorize`: a client public key line allowed to log in."""
        return self._call("POST", "/ssh", {"vm": vm, **({"authorize": authorize} if authorize else {})})

    def ssh_behave(self, vm: str, match: str = "", *, exit: int = 0, stdout: str = "", stderr: str = "",
                   hang: float = 0.0, count: int | None = None) -> dict:
        """The next commands containing `match` ('' any) answer so (first matching rule wins; `count` of them,
        None every one): exit code, output, `hang` seconds before answering (or until the client gives up)."""
        return self._call("POST", "/ssh/behave", {"vm": vm, "match": match, "exit": exit, "stdout": stdout,
                                                   "stderr": stderr, "hang": hang, "count": count})

    def ssh_reset(self, vm: str) -> dict:
        return self._call("POST", "/ssh/behave", {"vm": vm, "reset": True})

    def ssh_log(self, vm: str) -> list[dict]:
        """Every command the VM's endpoint received, in order: command, user, env, at (UNIX time), ended_at,
        exit, ended ('exited' or 'closed by the client')."""
        return self._call("GET", "/ssh/log", query={"vm": vm})["commands"]

    def fault(self, kind: str, count: int = 1, **target) -> dict:
        return self._call("POST", "/fault", {"kind": kind, "count": count, **target})
