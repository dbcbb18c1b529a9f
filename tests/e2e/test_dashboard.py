"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against the real server.

The browser is the system's `chromium` (CI installs it with .ci/system-packages);
Playwright never downloads one here. A screenshot is saved under test-artifacts/.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from tests.e2e.conftest import ServerFactory, ServerProcess
from tests.helpers import run_psql

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
XSS_NAME = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
XSS_MESSAGE = "<b onmouseover=\"window.__pwned=3\">bold</b> & <svg onload='window.__pwned=4'>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip("no system Chromium: apt-get install chromium (CI: .ci/system-packages chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def progress_of(page: Page, name: str) -> str | None:
    bar = page.locator("tr.activity", has_text=name).locator("[role=progressbar]")
    return bar.get_attribute("aria-valuenow")


def test_dashboard_shows_live_activity_and_renders_agent_text_as_text(server: ServerProcess, page: Page) -> None:
    response = httpx.get(f"{server.base_url}/", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["referrer-policy"] == "no-referrer"
    assert httpx.get(f"{server.base_url}/static/dashboard.js", timeout=5).status_code == 200
    assert httpx.get(f"{server.base_url}/static/__init__.py", timeout=5).status_code == 404  # listed files only

    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    run_psql(
        server.db_url,
        "SELECT agent_activity_start(organization_id => o, agent_type => 'planner', agent_name => n)"
        " FROM (VALUES ('org-a', 'seed-planner'), ('org-b', 'other-org')) AS v(o, n);",
    )
    page.goto(f"{server.base_url}/?access_token={server.token('org-a')}")
    expect(page.locator("html")).to_have_attribute("data-connection", "live")
    assert "access_token" not in page.url  # removed from the address bar (and history)
    expect(page.locator("tr.activity")).to_have_count(1)
    expect(page.locator("tr.activity").first).to_contain_text("seed-planner")
    expect(page.locator("#org-name")).to_have_text("org-a")

    # Untrusted agent names and messages arrive live and render as text; nothing runs.
    run_psql(
        server.db_url,
        f"""
        SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'executor',
               agent_name => {sql_literal(XSS_NAME)}, session_id => 'ses-xss');
        SELECT agent_activity_progress(id, message => {sql_literal(XSS_MESSAGE)}, progress => 30)
          FROM agent_activities WHERE session_id = 'ses-xss';
        """,
    )
    row = page.locator("tr.activity", has_text="ses-xss")
    expect(row.locator(".cell-main")).to_have_text(XSS_NAME)
    expect(row.locator(".message")).to_have_text(XSS_MESSAGE)
    expect(row.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "30")
    assert page.locator("#rows img, #rows script, #rows svg, #rows b").count() == 0
    row.locator(".message").hover()
    assert page.evaluate("window.__pwned") is None
    expect(page.locator("tr.activity").first).to_contain_text("ses-xss")  # newest first

    # A progress update moves the bar (its drawn width, once the transition is over).
    filled = "p => { const f = document.querySelector('tr.activity .fill'); const r = f.getBoundingClientRect().width"
    filled += " / f.parentElement.getBoundingClientRect().width; return Math.abs(r - p) < 0.02; }"
    page.wait_for_function(filled, arg=0.30)
    run_psql(
        server.db_url, "SELECT agent_activity_progress(id, progress => 75) FROM agent_activities WHERE progress = 30;"
    )
    expect(row.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "75")
    page.wait_for_function(filled, arg=0.75)

    # An update to a row hidden by a filter shows once the filter is cleared.
    page.select_option("#filter-agent", "planner")
    expect(page.locator("tr.activity")).to_have_count(1)
    run_psql(
        server.db_url,
        "SELECT agent_activity_progress(id, message => 'hidden update', progress => 90)"
        " FROM agent_activities WHERE progress > 0;",
    )
    expect(page.locator("html")).to_have_attribute("data-last-seq", "5")
    page.select_option("#filter-agent", "")
    expect(row.locator(".message")).to_have_text("hidden update")

    # Completion and failure, the counters, and the client-side filters.
    run_psql(
        server.db_url,
        "SELECT agent_activity_complete(id) FROM agent_activities WHERE session_id = 'ses-xss';"
        "SELECT agent_activity_fail(id, error => 'tool timed out') FROM agent_activities WHERE agent_type = 'planner'"
        " AND organization_id = 'org-a';",
    )
    expect(row).to_have_attribute("data-status", "completed")
    expect(page.locator("#count-completed")).to_have_text("1")
    expect(page.locator("#count-failed")).to_have_text("1")
    expect(page.locator("#count-running")).to_have_text("0")
    page.select_option("#filter-status", "failed")
    expect(page.locator("tr.activity")).to_have_count(1)
    expect(page.locator("tr.activity .message")).to_have_text("tool timed out")
    page.select_option("#filter-status", "")
    page.select_option("#filter-agent", "executor")
    expect(page.locator("tr.activity")).to_have_count(1)
    expect(page.locator("tr.activity")).to_contain_text("ses-xss")
    page.select_option("#filter-agent", "")
    expect(page.locator("tr.activity")).to_have_count(2)
    assert page.get_by_text("other-org").count() == 0

    page.locator("tr.activity", has_text="seed-planner").click()  # details
    expect(page.locator("tr.detail")).to_contain_text("tool timed out")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    page.screenshot(path=str(shot))
    print(f"dashboard screenshot: {shot}")
    assert errors == []  # no CSP violation, no script error


def test_dashboard_asks_for_a_token_and_resumes_after_a_restart(server: ServerProcess, page: Page) -> None:
    uncaught: list[str] = []
    page.on("pageerror", lambda e: uncaught.append(str(e)))
    page.on("console", lambda m: _print_console(m))

    page.goto(f"{server.base_url}/?access_token=not-a-jwt")
    expect(page.locator("html")).to_have_attribute("data-connection", "unauthorized")
    expect(page.locator("#token-error")).to_contain_text("refused")
    page.fill("#token-input", server.token("org-a"))
    page.click("#token-form button[type=submit]")
    expect(page.locator("html")).to_have_attribute("data-connection", "live")

    run_psql(server.db_url, "SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'executor');")
    expect(page.locator("html")).to_have_attribute("data-last-seq", "1")

    # The server goes away; events written meanwhile arrive once it is back, replayed from
    # Last-Event-ID (no second snapshot), each applied once.
    server.stop()
    expect(page.locator("html")).to_have_attribute("data-connection", "reconnecting")
    run_psql(
        server.db_url,
        "SELECT agent_activity_progress(id, message => 'while you were away', progress => 60) FROM agent_activities;"
        "SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'researcher');",
    )
    server.start()
    expect(page.locator("html")).to_have_attribute("data-last-seq", "3", timeout=30_000)
    expect(page.locator("html")).to_have_attribute("data-connection", "live")
    assert page.locator("html").get_attribute("data-snapshots") == "1"
    expect(page.locator("tr.activity")).to_have_count(2)
    executor = page.locator("tr.activity", has_text="executor")
    expect(executor.locator(".message")).to_have_text("while you were away")
    expect(executor.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "60")
    assert uncaught == []


def _print_console(message: ConsoleMessage) -> None:
    if message.type == "error":
        print(f"browser console: {message.text}")  # expected here: refused connections, the 401


def test_dashboard_renders_input_nested_3000_levels_deep(server: ServerProcess, page: Page) -> None:
    """PostgreSQL accepts jsonb nested thousands of levels deep; the page must neither overflow its
    stack nor hang on it (the payload formatter is iterative and bounded)."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    depth = 3000
    deep_object = '{"a": ' * depth + "1" + "}" * depth
    deep_array = "[" * depth + "]" * depth
    run_psql(
        server.db_url,
        "SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'executor', agent_name => 'in-snapshot',"
        f" input_data => {sql_literal(deep_object)}::jsonb, metadata => {sql_literal(deep_array)}::jsonb);",
    )
    page.goto(f"{server.base_url}/?access_token={server.token('org-a')}")
    expect(page.locator("html")).to_have_attribute("data-connection", "live")
    # And live, through an event rather than the snapshot.
    run_psql(
        server.db_url,
        "SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'executor', agent_name => 'live-deep',"
        f" input_data => {sql_literal(deep_array)}::jsonb, metadata => {sql_literal(deep_object)}::jsonb);",
    )
    expect(page.locator("tr.activity")).to_have_count(2)
    for name in ("in-snapshot", "live-deep"):
        page.locator("tr.activity", has_text=name).click()
    details = page.locator("tr.detail")
    expect(details).to_have_count(2)
    for i in range(2):
        texts = details.nth(i).locator("pre").all_text_contents()
        assert any(t.lstrip().startswith('{\n  "a": {') and t.rstrip().endswith("}") for t in texts), texts[0][:200]
        assert any(t.startswith("[\n  [") and t.rstrip().endswith("]") for t in texts), texts[1][:200]
        assert all(len(t) < 50_000 for t in texts)
    assert page.evaluate("1 + 1") == 2  # still responsive
    assert errors == []


def test_dashboard_opens_a_truncated_activity_whole(server_factory: ServerFactory, page: Page) -> None:
    """A snapshot over its byte budget sends the older activities without their input (marked
    "truncated"); opening one fetches GET /api/activities/{id} once and shows the whole input,
    which a later live event of that activity keeps."""
    server = server_factory(env={"PGACTIVITY_SNAPSHOT_MAX_BYTES": "65536"})  # three of the five fit
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if "/api/activities/" in r.url else None)
    inputs = [{"n": n, "blob": secrets.token_hex(10_000)} for n in range(5)]  # 20 KB, incompressible
    out = run_psql(
        server.db_url,
        "".join(
            "SELECT agent_activity_start(organization_id => 'org-a', agent_type => 'executor',"
            f" agent_name => 'big-{n}', input_data => {sql_literal(json.dumps(i))}::jsonb);"
            for n, i in enumerate(inputs)
        ),
    ).stdout
    ids = out.split()
    assert len(ids) == 5
    page.goto(f"{server.base_url}/?access_token={server.token('org-a')}")
    expect(page.locator("html")).to_have_attribute("data-connection", "live")
    expect(page.locator("tr.activity")).to_have_count(5)

    def input_of(n: int) -> str | None:
        pre = page.locator(f'tr.detail[data-id="{ids[n]}"] pre').first
        expect(pre).to_contain_text(inputs[n]["blob"])
        return pre.text_content()

    # The newest came whole: its input shows at once, nothing is fetched.
    page.locator("tr.activity", has_text="big-4").click()
    assert input_of(4) == json.dumps(inputs[4], indent=2)
    # The oldest came without its input: opening it fetches the whole row.
    with page.expect_response(f"**/api/activities/{ids[0]}") as response:
        page.locator("tr.activity", has_text="big-0").click()
    assert response.value.status == 200
    assert input_of(0) == json.dumps(inputs[0], indent=2)
    assert fetched == [f"{server.base_url}/api/activities/{ids[0]}"]

    # A live event of the fetched activity updates its row and keeps the whole input.
    progress = f"SELECT agent_activity_progress(id => '{ids[0]}', message => 'after the fetch', progress => 40);"
    run_psql(server.db_url, progress)
    row = page.locator("tr.activity", has_text="big-0")
    expect(row.locator(".message")).to_have_text("after the fetch")
    expect(row.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "40")
    assert input_of(0) == json.dumps(inputs[0], indent=2)
    assert len(fetched) == 1
    assert errors == []
