"""What `serve` makes of its arguments, without starting anything: addresses, the command a detaching serve runs
(every option must survive the trip), what is refused before any process starts, and the names clients see."""
from __future__ import annotations

from pathlib import Path

import pytest

from olvm_backup.access import iscsi, nbd
from olvm_backup.access.exports import Address, ExportError, ExportSpec
from olvm_backup.cli.main import build_parser
from olvm_backup.cli.serving import _foreground_argv


@pytest.mark.parametrize("text, expected", [
    ("unix:/run/x.sock", Address(unix=Path("/run/x.sock"))),
    ("tcp:127.0.0.1:10809", Address(host="127.0.0.1", port=10809)),
    ("tcp::10809", Address(host="0.0.0.0", port=10809)),
    ("tcp:[::1]:10809", Address(host="::1", port=10809)),
])
def test_addresses_parse_and_print_back(text, expected):
    assert Address.parse(text) == expected
    assert Address.parse(str(expected)) == expected


@pytest.mark.parametrize("text", ["10809", "tcp:host", "tcp:host:0", "tcp:host:70000", "unix:", "udp:h:1"])
def test_a_wrong_address_is_refused(text):
    with pytest.raises(ValueError, match="unix:PATH or tcp:HOST:PORT"):
        Address.parse(text)


def test_clients_reach_a_wildcard_listener_through_loopback():
    assert Address.parse("tcp:0.0.0.0:10809").nbd_uri() == "nbd://127.0.0.1:10809"
    assert Address.parse("unix:/run/x.sock").nbd_uri() == "nbd+unix:///?socket=/run/x.sock"
    assert nbd.nbd_uri(unix=Path("/s"), name="rp1/disk 1") == "nbd+unix:///rp1%2Fdisk%201?socket=/s"


def test_a_detaching_serve_runs_itself_with_every_option():
    spec = ExportSpec("rp1", "root", Address.parse("tcp:0.0.0.0:10809"), True, Path("/var/tmp/o.qcow2"),
                      Address.parse("tcp:0.0.0.0:3260"), ("iqn.1994-05.com.redhat:h1", "10.0.0.0/24"))
    args = build_parser().parse_args(_foreground_argv(spec, "abcd1234"))
    again = ExportSpec(args.restore_point, args.disk, args.listen, args.writable, args.overlay, args.iscsi,
                       tuple(args.allow))
    assert again == spec and args.id == "abcd1234" and not args.detach


@pytest.mark.parametrize("spec, problem", [
    (ExportSpec("rp1", "root", writable=True), "--writable needs --overlay"),
    (ExportSpec("rp1", "root", overlay=Path("/o.qcow2")), "--overlay is for --writable"),
    (ExportSpec("rp1", "root", iscsi=Address.parse("tcp:0.0.0.0:3260")), "at least one --allow"),
    (ExportSpec("rp1", "root", iscsi=Address.parse("unix:/x"), allow=("ALL",)), "tcp:HOST:PORT portal"),
])
def test_what_cannot_work_is_refused_before_anything_starts(spec, problem):
    with pytest.raises(ExportError, match=problem):
        spec.check()


def test_target_names_are_valid_iqns_and_initiators_are_told_apart():
    assert iscsi.target_name("2f0c-RP_1", "Disk 1/os") == "iqn.2026-01.olvm-backup:2f0c-rp-1.disk-1-os"
    assert iscsi.is_initiator_name("iqn.1994-05.com.redhat:h1") and iscsi.is_initiator_name("eui.02004567A425678D")
    assert not iscsi.is_initiator_name("10.0.0.5") and not iscsi.is_initiator_name("ALL")
