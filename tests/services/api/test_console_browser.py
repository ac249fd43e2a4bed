"""The web console driven in a real headless browser (Debian's chromium through Playwright) against the simulator,
the pipeline and the API: an operator logs in, sees the engine's VMs, backs one up and watches its progress reach
100 %, restores the restore point as a new powered-on VM in another cluster and storage domain (checked on the
engine through the SDK), browses the restore point's file system and downloads a file (the guest's sha256); a
failed backup shows on the dashboard; policies are read-only to an operator and edited by an admin.

The tests build on each other and run in file order, on one simulator, pipeline, API and browser for the module.
Screenshots of every page go to test-artifacts/console/ (git-ignored) for a human to look at."""
from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest
import yaml
from playwright import sync_api as playwright_api

from tests.pipeline.conftest import EngineView, module_sim
from tests.services.api.apiserver import PASSWORDS, pipeline_with_api

CHROMIUM = Path("/usr/bin/chromium")  # Debian's; Playwright's own browsers cannot be downloaded here
# Without the background-networking flags Chromium reaches out to Google's services, which this network refuses.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "console"
WAIT = 60_000  # ms: the longest a job page may take to show its end

VM, IDLE, DISK = "web1", "idle1", "web1_os"
RESTORED = "web1-copy"
INJECTED = "<b>not-markup<b>.txt"  # a guest chooses its file names: shown as text, never as HTML
INVENTORY = {
    "data_centers": [{"name": "Default"}],
    "clusters": [{"name": "Default", "data_center": "Default"}, {"name": "Other", "data_center": "Default"}],
    "storage_domains": [{"name": "data1", "data_center": "Default"}, {"name": "data2", "data_center": "Default"}],
    "vms": [
        {"name": VM, "status": "up", "guest_agent": True, "os": "rhel_9x64", "disks": [{
            "name": DISK, "size": "16MiB", "format": "cow", "interface": "virtio_scsi", "bootable": True,
            "storage_domain": "data1",
            "filesystems": {"table": "gpt", "volumes": [{"name": "root", "fs": "ext4", "size": "8MiB", "files": [
                {"path": "etc/hostname", "text": f"{VM}\n"},
                {"path": "srv/report.bin", "pattern": "random", "seed": 7, "size": "200KiB", "mode": "0640"},
                {"path": f"srv/{INJECTED}", "text": "a name with markup in it\n"},
            ]}]}}]},
        {"name": IDLE, "status": "up", "guest_agent": True, "disks": [{
            "name": f"{IDLE}_os", "size": "4MiB", "bootable": True,
            "content": [{"offset": 0, "length": "1MiB", "pattern": "random", "seed": 2}]}]},
    ],
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    yield from module_sim(tmp_path_factory, yaml.safe_dump(INVENTORY, sort_keys=False))


@pytest.fixture(scope="module")
def api(broker, moto_endpoint, sim, tmp_path_factory):
    """The snapshotter, a reader, a writer, the restorer and the auditor, and the API, on one prefix and bucket;
    small read tasks: the 16 MiB disk is several, so the job page shows its progress in steps."""
    yield from pipeline_with_api(broker, moto_endpoint, sim, tmp_path_factory.mktemp("console"), task_size=4 << 20)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium")
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Console:
    """One user's browser (its own cookies) on the console."""

    def __init__(self, browser, api, downloads: Path) -> None:
        self.base = api.client.origin
        # the API's certificate is the self-signed one start_api made: trusted by this context alone
        self.context = browser.new_context(ignore_https_errors=True, accept_downloads=True,
                                           viewport={"width": 1400, "height": 900})
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # a script or style the Content-Security-Policy blocked is said on the console (refused requests are
        # expected: a wrong password, a taken name)
        self.page.on("console", lambda m: m.type == "error" and "Failed to load resource" not in m.text
                     and self.errors.append(m.text))
        self.page.on("dialog", lambda d: d.accept())
        self.downloads = downloads

    def go(self, path: str) -> None:
        self.page.goto(self.base + path)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def login(self, user: str, password: str | None = None, *, next_path: str = "/") -> None:
        self.go(next_path)
        self.page.wait_for_url(re.compile(r"/login\?next="))
        self.page.fill("#username", user)
        self.page.fill("#password", password or PASSWORDS[user])
        self.page.click("#login-button")

    def close(self) -> None:
        assert self.errors == [], f"scripts failed on the pages: {self.errors}"
        self.context.close()


@pytest.fixture(scope="module")
def operator(browser, api, tmp_path_factory):
    c = Console(browser, api, tmp_path_factory.mktemp("downloads"))
    yield c
    c.close()


@pytest.fixture(scope="module")
def state():
    return {}


def text(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def dashboard_loaded(page) -> None:
    """Every part of the dashboard answered (each loads on its own), none with an error."""
    page.wait_for_function("() => document.getElementById('dashboard-error').textContent !== '' || "
                           "[...document.querySelectorAll('.figure, #point-count')].every(e => e.textContent !== '…')")
    assert text(page, "#dashboard-error") == ""


def follow_job(console: Console, name: str) -> list[tuple[str, float | None]]:
    """On a job page: wait for its final event; every event the page listed as (kind, percent)."""
    page = console.page
    page.wait_for_url(re.compile(r"/jobs/[^/]+$"))
    page.wait_for_function(
        "() => ['completed', 'failed', 'cancelled'].includes(document.getElementById('job-state').textContent)",
        timeout=WAIT)
    console.shot(name)
    events = page.eval_on_selector_all(
        "#job-events li", "items => items.map(i => [i.dataset.kind, i.dataset.percent ?? null])")
    return [(kind, None if percent is None else float(percent)) for kind, percent in events]


def test_login_refuses_a_wrong_password_then_shows_the_engines_vms(api, operator):
    page = operator.page
    operator.login("oper", "not-the-password")
    page.wait_for_selector("#login-error:not(:empty)")
    assert "wrong user name or password" in text(page, "#login-error")
    assert page.input_value("#password") == ""
    operator.shot("01-login-refused")

    page.fill("#password", PASSWORDS["oper"])
    page.click("#login-button")
    page.wait_for_url(operator.base + "/")
    dashboard_loaded(page)
    names = page.eval_on_selector_all("#vms tbody tr[data-vm]", "rows => rows.map(r => r.dataset.vm)")
    assert sorted(names) == [IDLE, VM]
    assert text(page, "#role") == "operator"
    assert text(page, "#unprotected-count") == "2" and text(page, "#protected-count") == "0"
    # the session cookie is out of the scripts' reach, and no page carries the token
    cookies = {c["name"]: c for c in operator.context.cookies()}
    assert cookies["olvm_session"]["httpOnly"] and cookies["olvm_session"]["secure"]
    assert cookies["olvm_session"]["value"] not in page.content()
    operator.shot("02-dashboard")


def test_a_backup_started_from_the_dashboard_shows_its_progress_to_100_percent(api, operator, state):
    page = operator.page
    page.click(f"#vms tr[data-vm='{VM}'] button.backup")
    page.select_option("#backup-mode", "full")
    operator.shot("03-backup-dialog")
    page.click("#backup-start")
    events = follow_job(operator, "04-backup-progress")
    kinds = [k for k, _ in events]
    assert kinds[-1] == "completed", events
    percents = [p for k, p in events if k == "progress" and p is not None]
    assert len(percents) >= 2 and percents == sorted(percents) and percents[-1] == 100.0, events
    assert page.get_attribute("#job-progress", "value") == "100"
    assert text(page, "#job-percent") == "100 %"
    state["backup_id"] = text(page, "#job-point")
    # the same restore point the API lists
    token = api.client.token("oper")
    points = api.client.request("GET", f"/api/restore-points?vm={VM}", token=token).json()
    assert [p["backup_id"] for p in points] == [state["backup_id"]]


def test_a_failed_backup_shows_on_the_dashboard_with_its_reason(api, operator, sim):
    from sim.client import SimAdmin

    SimAdmin(sim.data).fault("freeze-fail")  # the guest cannot freeze: a quiesced backup fails
    page = operator.page
    operator.go("/")
    page.click(f"#vms tr[data-vm='{IDLE}'] button.backup")
    page.click("#backup-start")
    events = follow_job(operator, "05-backup-failed")
    assert events[-1][0] == "failed", events
    assert "freeze" in text(page, "#job-result")

    operator.go("/")
    # the auditor writes the trail in batches: reload until the failure is there
    for _ in range(30):
        dashboard_loaded(page)
        if text(page, "#failure-count") == "1":
            break
        page.wait_for_timeout(1000)
        page.reload()
    assert text(page, "#failure-count") == "1"
    row = text(page, "#failures tbody tr")
    assert IDLE in row and "freeze" in row
    assert text(page, "#protected-count") == "1" and text(page, "#unprotected-count") == "1"
    assert text(page, "#storage-used") != "0 B" and text(page, "#point-count") == "1"
    operator.shot("06-dashboard-after-backups")


def test_the_restore_point_restores_as_a_new_vm_in_another_cluster_powered_on(api, operator, sim, state):
    page = operator.page
    page.click("header nav a[href='/restore-points']")
    row = f"#points tr[data-point='{state['backup_id']}']"
    page.wait_for_selector(row)
    operator.shot("07-restore-points")
    page.click(f"{row} button.restore")
    assert page.input_value("#restore-name") == f"{VM}-restored"
    page.fill("#restore-name", RESTORED)
    # the engine's clusters and data storage domains are the dialog's choices
    page.wait_for_selector("#restore-storage-domain option[value='data2']", state="attached")
    assert page.eval_on_selector_all("#restore-cluster option", "os => os.map(o => o.value)") == ["", "Default",
                                                                                                   "Other"]
    page.select_option("#restore-cluster", "Other")
    page.select_option("#restore-storage-domain", "data2")
    page.check("#restore-power-on")
    operator.shot("08-restore-dialog")
    page.click("#restore-start")
    events = follow_job(operator, "09-restore-progress")
    assert events[-1][0] == "completed", events
    assert text(page, "#job-percent") == "100 %"

    def restored(system):
        [vm] = system.vms_service().list(search=f"name={RESTORED}")
        cluster = system.clusters_service().cluster_service(vm.cluster.id).get()
        domains = set()
        for attachment in system.vms_service().vm_service(vm.id).disk_attachments_service().list():
            disk = system.disks_service().disk_service(attachment.disk.id).get()
            domains |= {system.storage_domains_service().storage_domain_service(sd.id).get().name
                        for sd in disk.storage_domains}
        return vm.status.value, cluster.name, domains

    assert EngineView(sim).call(restored) == ("up", "Other", {"data2"})

    # a second restore under the same name is refused in the dialog, naming the field
    operator.go("/restore-points")
    page.click(f"{row} button.restore")
    page.fill("#restore-name", RESTORED)
    page.click("#restore-start")
    page.wait_for_selector("#restore-error:not(:empty)")
    assert text(page, "#restore-error").startswith("name: ") and RESTORED in text(page, "#restore-error")
    page.keyboard.press("Escape")


def test_a_file_browsed_in_the_restore_point_downloads_with_the_guests_sha256(api, operator, sim, state):
    from sim.client import SimAdmin

    page = operator.page
    operator.go("/restore-points")
    page.click(f"#points tr[data-point='{state['backup_id']}'] a.browse")
    for step in (DISK, "p1", "srv"):  # the disk, its partition, a directory: clicked as a user would
        page.click(f"#files a.open:text-is('{step}')")
        page.wait_for_selector(f"#crumbs .current:text-is('{step}')")
    page.wait_for_selector("#files tbody tr[data-type='file']")
    names = page.eval_on_selector_all("#files tbody td.name", "cells => cells.map(c => c.textContent)")
    assert sorted(names) == sorted(["report.bin", INJECTED])
    assert page.locator("#files b").count() == 0  # the guest's file name stayed text
    operator.shot("10-file-browser")

    with page.expect_download() as download:
        page.click("#files tr[data-path$='/srv/report.bin'] a.download")
    saved = operator.downloads / "report.bin"
    download.value.save_as(saved)
    got = hashlib.sha256(saved.read_bytes()).hexdigest()

    [volume] = SimAdmin(sim.data).filesystems(VM, DISK)["volumes"]
    guest = {e["path"]: e for e in volume["files"]}
    assert got == guest["srv/report.bin"]["sha256"]
    assert saved.stat().st_size == 200 * 1024


def test_policies_are_read_only_to_an_operator_and_edited_by_an_admin(api, browser, operator, tmp_path):
    token = api.client.token("admin")
    created = api.client.request("POST", "/api/policies", {"name": "gold", "description": "the gold tier",
                                                           "vms": [VM]}, token=token)
    assert created.status == 201, created.body

    page = operator.page
    operator.go("/policies")
    page.wait_for_selector("section.policy[data-policy='gold']")
    assert page.locator("#new-policy-form").count() == 0
    assert page.locator("section.policy textarea, section.policy button.save").count() == 0
    assert page.locator("section.policy[data-policy='gold'] button.run").count() == 1
    operator.shot("11-policies-operator")

    admin = Console(browser, api, tmp_path)
    try:
        a = admin.page
        admin.login("admin", next_path="/policies")
        a.wait_for_url(admin.base + "/policies")
        a.wait_for_selector("section.policy[data-policy='gold']")
        # a new policy from its document: it holds the idle VM, which the dashboard then shows protected
        a.click("#new-policy summary")
        a.fill("#new-policy-document", f'{{"name": "silver", "vms": ["{IDLE}"], '
                                       '"schedules": [{"name": "night", "cron": "0 1 * * *"}]}')
        a.click("#new-policy-create")
        a.wait_for_selector("section.policy[data-policy='silver']")
        # an edit of gold's document: the description
        gold = "section.policy[data-policy='gold']"
        a.click(f"{gold} details.edit summary")
        document = a.input_value(f"{gold} textarea")
        a.fill(f"{gold} textarea", document.replace("the gold tier", "the <i>gold</i> tier, edited"))
        a.click(f"{gold} button.save")
        a.wait_for_selector(f"{gold} p.status:text('saved: description changed')")
        a.wait_for_selector(f"{gold} dd:text('the <i>gold</i> tier, edited')")
        assert a.locator(f"{gold} i").count() == 0
        admin.shot("12-policies-admin")

        got = api.client.request("GET", "/api/policies/gold", token=token).json()
        assert got["description"] == "the <i>gold</i> tier, edited"
        admin.go("/")
        a.wait_for_selector(f"#vms tr[data-vm='{IDLE}'] td.yes")
        assert text(a, f"#vms tr[data-vm='{IDLE}'] td:nth-child(4)") == "silver"
        admin.shot("13-dashboard-admin")
    finally:
        admin.close()

    # the operator's own session cannot edit either: the API refuses it (403), whatever a page would offer
    page.reload()
    page.wait_for_selector("section.policy[data-policy='gold']")
    status = page.evaluate("""async () => (await fetch('/api/policies/gold', {method: 'PUT',
        headers: {'Content-Type': 'application/json',
                  'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content},
        body: JSON.stringify({description: 'operator was here'})})).status""")
    assert status == 403
