"""Drives the console in Debian's Chromium, headless (Playwright's Python
package, no browser of its own). Run by tests/e2e/console.rs against a real
worker; exits non-zero, saying what failed, if the console does not do what
an operator needs.

    console.py BASE TOKEN REPLAY_EVENT PURGE_EVENT SCREENSHOT

The worker has integrations `hook` (answers 200) and `gone` (the deliveries
of REPLAY_EVENT and PURGE_EVENT to it are dead; it answers 200 from now on).
"""

import re
import sys

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright

base, token, replay_event, purge_event, screenshot = sys.argv[1:6]
CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 20_000


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            run(browser)
        finally:
            browser.close()


def run(browser):
    # Without the token the browser is asked for credentials (headless, it
    # has none to give, and the navigation fails).
    anonymous = browser.new_context()
    try:
        anonymous.new_page().goto(base + "/")
        raise AssertionError("the console opened without the token")
    except PlaywrightError as e:
        assert "ERR_INVALID_AUTH_CREDENTIALS" in str(e), e
    anonymous.close()

    credentials = {"username": "operator", "password": token}

    # Without JavaScript every list is in the page; the actions are not.
    plain = browser.new_context(java_script_enabled=False, http_credentials=credentials)
    page = plain.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(base + "/")
    expect(page.locator("tr[data-integration=hook]")).to_contain_text("hook")
    expect(page.locator("tr[data-integration=gone]")).to_contain_text("gone")
    expect(page.locator("button[data-action=test]").first).to_be_hidden()
    page.goto(base + "/dead-letters")
    expect(page.locator("table.dead")).to_contain_text(replay_event)
    plain.close()

    context = browser.new_context(
        http_credentials=credentials, viewport={"width": 1400, "height": 800}
    )
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base + "/")
    hook = page.locator("tr[data-integration=hook]")
    expect(hook).to_contain_text("active")
    expect(page.locator("tr[data-integration=gone]")).to_contain_text("warning")

    # An action without the token says so; with it, the test delivery
    # shows the exchange.
    hook.get_by_role("button", name="Test").click()
    expect(page.locator("#notice")).to_contain_text("needs the admin token")
    page.fill("#admin-token", token)
    page.click("#token-form button")
    hook.get_by_role("button", name="Test").click()
    expect(page.locator("#trial-output")).to_contain_text("result: delivered")
    expect(page.locator("#trial-output")).to_contain_text("< HTTP 200")
    expect(page.locator("#trial-title")).to_contain_text("hook: delivered")

    # The dead letters: one replayed from its row, the rest purged.
    page.goto(base + "/dead-letters")
    replay_row = page.locator("table.dead tr", has_text=replay_event)
    expect(replay_row).to_have_count(1)
    expect(page.locator("table.dead tr", has_text=purge_event)).to_have_count(1)
    replay_row.get_by_role("link", name="Show").click()
    expect(page.locator("h1")).to_contain_text("Dead letter")
    expect(page.locator("table.history")).to_contain_text("HTTP 410")
    page.go_back()
    page.locator("table.dead tr", has_text=replay_event).get_by_role(
        "button", name="Replay"
    ).click()
    expect(page.locator("#notice")).to_contain_text("Replayed 1.")
    expect(page.locator("table.dead tr", has_text=replay_event)).to_have_count(0)

    dialogs = []

    def confirm(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)
    page.get_by_role("button", name="Purge the dead queue").click()
    expect(page.locator("#notice")).to_contain_text("Purged 1.")
    assert dialogs and "cannot be replayed" in dialogs[0], dialogs
    expect(page.locator("#live")).to_contain_text("The dead queue is empty.")

    # The attempts of the replayed event, found by its id.
    page.goto(base + "/attempts")
    page.fill("#q", replay_event)
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"q=" + re.escape(replay_event)))
    expect(page.locator("table.attempts")).to_contain_text("gone")

    page.goto(base + "/")
    expect(page.locator("tr[data-integration=gone]")).to_contain_text("gone")
    page.screenshot(path=screenshot, full_page=True)
    assert not errors, f"script errors: {errors}"
    context.close()


if __name__ == "__main__":
    main()
