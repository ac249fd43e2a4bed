"""Power changes as the engine shows them: through their transitional states, for a configurable time.

start:    down -> wait_for_launch -> powering_up -> up. Event 153 USER_STARTED_VM when the command is accepted, 32
          USER_RUN_VM ("started on Host") when the VM is up.
stop:     -> powering_down -> down. Event 33 USER_STOP_VM when accepted, 61 VM_DOWN when down.
shutdown: -> powering_down -> down. Event 73 USER_INITIATED_SHUTDOWN_VM when accepted, 61 VM_DOWN when down.

Each transitional state lasts `engine.state_delay` seconds (`olvm-sim serve --state-delay`), wait_for_launch at most
STEP. A request conflicting with a transition gets the engine's refusal: start on a VM that is not down (its
powering up or down included) is "VM is running"; stop and shutdown are accepted while it powers up (a stop while a
shutdown runs forces it off now), refused only on a VM that is down. Snapshot creation and removal keep their
snapshot `locked` for at least the same time (see Engine.hold).
"""
from __future__ import annotations

import asyncio

from . import snapshots
from .errors import conflict

DEFAULT_STATE_DELAY = 0.5
USER = "admin@internal-authz"
TRANSITIONAL = ("wait_for_launch", "powering_up", "powering_down")


def power(engine, vm_id: str, action: str, correlation_id: str | None) -> None:
    vm = engine.vm(vm_id)
    name, status = vm["name"], vm["status"]
    host = engine.state.table("hosts").get(engine.host_id(), {}).get("name", "host1")
    if action == "start":
        snapshots.refuse_while_locked(engine, vm, "run", "VM")  # RunVm takes the VM's lock
        if status != "down":
            raise conflict(f"Cannot run VM. VM {name} is running")
        move = _next_move(engine, vm_id)
        vm.update(status="wait_for_launch", host_id=engine.host_id())
        engine.event(153, f"VM {name} was started by {USER} (Host: {host}).", vm_id=vm_id,
                     correlation_id=correlation_id)
        engine.spawn(_boot(engine, vm, move, host, correlation_id), f"start {name}")
        return
    if status == "down":
        raise conflict(f"Cannot {action} VM. VM {name} is not running")
    if action == "shutdown":
        engine.event(73, f"VM shutdown initiated by {USER} on VM {name} (Host: {host}).", vm_id=vm_id,
                     correlation_id=correlation_id)
        if status == "powering_down":  # already on its way down: the running transition ends it
            return
        delay = engine.state_delay
    else:
        engine.event(33, f"VM {name} powered off by {USER} (Host: {host}).", vm_id=vm_id,
                     correlation_id=correlation_id)
        # A forced power-off of a VM already shutting down does not wait for the guest any more.
        delay = 0 if status == "powering_down" else engine.state_delay
    move = _next_move(engine, vm_id)
    vm["status"] = "powering_down"
    engine.state.save()
    engine.spawn(_halt(engine, vm, move, delay, correlation_id), f"{action} {name}")


def _next_move(engine, vm_id: str) -> int:
    """A new transition of the VM; one still running sees it is superseded and stops moving the VM."""
    engine.power_moves[vm_id] = engine.power_moves.get(vm_id, 0) + 1
    return engine.power_moves[vm_id]


def _current(engine, vm: dict, move: int) -> bool:
    return engine.power_moves.get(vm["id"]) == move and vm["id"] in engine.state.table("vms")


async def _boot(engine, vm: dict, move: int, host: str, correlation_id: str | None) -> None:
    from .engine import STEP
    await asyncio.sleep(min(STEP, engine.state_delay))
    if not _current(engine, vm, move):
        return
    vm["status"] = "powering_up"
    engine.state.save()
    await asyncio.sleep(engine.state_delay)
    if not _current(engine, vm, move):
        return
    vm.update(status="up", host_id=engine.host_id())
    engine.event(32, f"VM {vm['name']} started on Host {host}", vm_id=vm["id"], correlation_id=correlation_id)


async def _halt(engine, vm: dict, move: int, delay: float, correlation_id: str | None) -> None:
    await asyncio.sleep(delay)
    if not _current(engine, vm, move):
        return
    vm.update(status="down", host_id=None)
    engine.event(61, f"VM {vm['name']} is down. Exit message: Admin shut down from the engine", vm_id=vm["id"],
                 correlation_id=correlation_id)


def settle(state) -> None:
    """After a restart no transition is running: a VM powering up is up, one powering down is down."""
    for vm in state.table("vms").values():
        if vm["status"] in ("wait_for_launch", "powering_up"):
            vm["status"] = "up"
        elif vm["status"] == "powering_down":
            vm.update(status="down", host_id=None)
