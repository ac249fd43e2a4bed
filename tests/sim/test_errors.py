"""Errors as the engine answers them: an XML <fault> (application/xml) for every status, and the serve options a
tester uses to point clients with fixed settings at the simulator."""
from __future__ import annotations

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from cryptography import x509
from ovirtsdk4 import http
from ovirtsdk4.service import Service

from .conftest import start_sim

ROOT_TAG = "00000000-0000-0000-0000-000000000000"


def _raw(connection: sdk.Connection, method: str, path: str, *, retry_auth: bool = True):
    """Send a request through the SDK's connection and return its response, as its services do."""
    context = connection.send(http.Request(method=method, path=path, headers={}, query={}))
    return connection.wait(context, failed_auth=not retry_auth)


def _fault_of(connection: sdk.Connection, response) -> sdk.Error:
    """The error the SDK's services raise for this response (it insists on an XML body)."""
    connection.check_xml_content_type(response)
    with pytest.raises(sdk.Error) as e:
        Service(connection, "")._check_fault(response)
    return e.value


def test_unknown_id_and_unknown_path_are_the_same_404(connection):
    system = connection.system_service()
    with pytest.raises(sdk.NotFoundError) as by_id:
        system.vms_service().vm_service("0badc0de-0000-0000-0000-000000000000").get()
    by_path = _fault_of(connection, _raw(connection, "GET", "/nosuchcollection/123"))  # no such collection
    assert isinstance(by_path, sdk.NotFoundError)
    for e in (by_id.value, by_path):
        assert e.code == 404 and e.fault is not None, e
        assert e.fault.reason == "Not Found" and e.fault.detail.startswith("Entity not found"), e.fault.detail
        assert 'Fault reason is "Not Found"' in str(e)


def test_method_not_allowed_is_a_405_fault(connection):
    response = _raw(connection, "PUT", "/events")  # the events collection has no update
    assert response.code == 405
    e = _fault_of(connection, response)
    assert e.code == 405 and "PUT is not allowed" in e.fault.detail, e


def test_bad_request_is_a_400_fault(connection):
    tags = connection.system_service().tags_service()
    with pytest.raises(sdk.Error) as e:
        tags.add(types.Tag(description="no name"))
    assert e.value.code == 400 and e.value.fault.reason == "Incomplete parameters", e.value


def test_conflict_is_a_409_fault(connection):
    tags = connection.system_service().tags_service()
    tags.add(types.Tag(name="dup409"))
    with pytest.raises(sdk.Error) as e:
        tags.add(types.Tag(name="dup409"))
    assert e.value.code == 409 and "already in use" in e.value.fault.detail, e.value


def test_internal_error_is_a_500_fault(sim, connection):
    sim.fault("engine-500")
    with pytest.raises(sdk.Error) as e:
        connection.system_service().vms_service().list()
    assert e.value.code == 500 and "Injected fault" in e.value.fault.detail, e.value


def test_unauthenticated_is_a_401_fault(sim):
    c = sim.connection
    conn = sdk.Connection(url=c["url"], token="not-a-token", ca_file=c["ca_file"])
    try:
        response = _raw(conn, "GET", "/vms", retry_auth=False)
        assert response.code == 401
        e = _fault_of(conn, response)
        assert isinstance(e, sdk.AuthError) and e.code == 401 and e.fault.reason == "Unauthorized", e
    finally:
        conn.close(logout=False)


def test_tag_tree_has_the_engines_root(connection):
    tags = connection.system_service().tags_service()
    child = tags.add(types.Tag(name="no-parent", description="added without a parent"))
    listed = {t.id: t for t in tags.list()}
    root = listed[ROOT_TAG]
    assert root.name == "root" and root.parent is None
    assert tags.tag_service(ROOT_TAG).get().name == "root"
    assert listed[child.id].parent.id == ROOT_TAG
    assert all(t.parent is not None and t.parent.id in listed for t in listed.values() if t.id != ROOT_TAG)
    assert connection.follow_link(listed[child.id].parent).name == "root"
    with pytest.raises(sdk.Error) as e:
        tags.add(types.Tag(name="root"))  # the root's name is taken like any other
    assert e.value.code == 409


@pytest.mark.processes  # starts a simulator of its own
def test_serve_with_chosen_password_and_certificate_host(tmp_path):
    password_file = tmp_path / "password"
    password_file.write_text("Chosen-Pa55\n")
    s = start_sim(tmp_path / "sim", args=("--password-file", str(password_file), "--cert-host", "engine.example.test",
                                          "--cert-host", "192.0.2.10"))
    try:
        assert s.connection["password"] == "Chosen-Pa55"
        with open(f"/proc/{s.proc.pid}/cmdline", "rb") as f:
            assert b"Chosen-Pa55" not in f.read()  # the password never appears in the process arguments
        conn = sdk.Connection(url=s.connection["url"], username="admin@internal", password="Chosen-Pa55",
                              ca_file=s.ca_file)
        try:
            assert conn.system_service().vms_service().list()
        finally:
            conn.close()
        wrong = sdk.Connection(url=s.connection["url"], username="admin@internal", password="other",
                               ca_file=s.ca_file)
        with pytest.raises(sdk.AuthError):
            wrong.system_service().vms_service().list()
        cert = x509.load_pem_x509_certificate((s.data / "pki" / "server.pem").read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {"engine.example.test", "localhost"} <= set(san.get_values_for_type(x509.DNSName))
        assert {"192.0.2.10", "127.0.0.1"} <= {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    finally:
        s.stop()


@pytest.mark.processes  # starts a simulator of its own
def test_serve_takes_the_password_from_the_environment(tmp_path):
    s = start_sim(tmp_path / "sim", env={"OLVM_SIM_PASSWORD": "From-Env-1"})
    try:
        assert s.connection["password"] == "From-Env-1"
        conn = sdk.Connection(url=s.connection["url"], username="admin@internal", password="From-Env-1",
                              ca_file=s.ca_file)
        try:
            assert conn.system_service().vms_service().list()
        finally:
            conn.close()
    finally:
        s.stop()
