"""A command inside the guest, over SSH (asyncssh): key-based login with the key file the spec names, the guest's
host key checked against the spec's known-hosts file or public key, never accepted unseen. No password, no agent,
no ~/.ssh/config: only what the spec says (a node's own SSH setup does not change what a backup does)."""
from __future__ import annotations

import asyncio
import contextlib
import time

import asyncssh

from .spec import CommandSpec
from .verdict import Ran

CONNECT_TIMEOUT = 30.0  # seconds to connect and log in, within the command's own timeout


async def run_guest(spec: CommandSpec, env: dict[str, str]) -> Ran:
    guest = spec.guest
    assert guest is not None, "a guest command has a guest target (parse_spec)"
    started = time.monotonic()
    if guest.known_hosts:
        known_hosts = guest.known_hosts
    else:
        try:
            known_hosts = ([asyncssh.import_public_key(guest.host_key)], [], [])
        except (asyncssh.KeyImportError, ValueError) as e:
            return Ran(None, error=f"host_key is not a public key ({e})")
    where = f"{guest.user}@{guest.host}:{guest.port}"
    try:
        async with asyncio.timeout(spec.timeout) as deadline:
            try:
                conn = await asyncssh.connect(
                    guest.host, guest.port, username=guest.user, client_keys=[guest.key_file], known_hosts=known_hosts,
                    agent_path=None, password=None, config=None, preferred_auth="publickey",
                    connect_timeout=min(CONNECT_TIMEOUT, spec.timeout), login_timeout=min(CONNECT_TIMEOUT,
                                                                                          spec.timeout))
            except asyncssh.HostKeyNotVerifiable as e:
                return Ran(None, error=f"{where}: its host key does not match the pinned one ({e.reason}): refused",
                           duration=time.monotonic() - started)
            except asyncssh.PermissionDenied:
                return Ran(None, error=f"{where}: login refused for the key in {guest.key_file}",
                           duration=time.monotonic() - started)
            except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as e:
                return Ran(None, error=f"key file {guest.key_file}: {e} (an unencrypted key file, readable only by "
                                       "the snapshotter's user)", duration=time.monotonic() - started)
            except (OSError, asyncssh.Error) as e:
                return Ran(None, error=f"{where}: {getattr(e, 'reason', None) or e}",
                           duration=time.monotonic() - started)
            async with conn:
                try:
                    process = await conn.create_process(spec.command_line, env={**dict(spec.env), **env},
                                                        encoding=None, stdin=asyncssh.DEVNULL)
                    try:
                        stdout, stderr = await asyncio.gather(process.stdout.read(), process.stderr.read())
                        await process.wait_closed()
                    finally:
                        if process.exit_status is None:
                            # Timed out or cancelled: the session closed, which makes sshd hang the command up.
                            with contextlib.suppress(Exception):
                                process.terminate()
                            process.close()
                except (asyncssh.Error, OSError) as e:  # the connection lost mid-command
                    return Ran(None, error=f"{where}: {getattr(e, 'reason', None) or e}",
                               duration=time.monotonic() - started)
    except TimeoutError:
        if deadline.expired():
            return Ran(None, duration=time.monotonic() - started, timed_out=True)
        raise
    code = process.exit_status
    if code is None or code < 0:
        # Ended by a signal in the guest: -1, or as a shell says it.
        code = 128 + (_signal_number(process.exit_signal) if process.exit_signal else 0) if code is None else code
    return Ran(code, stdout or b"", stderr or b"", time.monotonic() - started)


def _signal_number(exit_signal) -> int:
    import signal
    try:
        return signal.Signals["SIG" + exit_signal[0]].value
    except (KeyError, TypeError, IndexError):
        return 0
