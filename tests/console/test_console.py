"""The console of `flowc serve` in a real browser: headless Chromium from
Debian, driven by Playwright. tests/console.rs starts the server on a
database it prepared and runs this file with:

  CONSOLE_URL    the server (http://127.0.0.1:PORT)
  CONSOLE_TOKEN  its API token
  CHROMIUM       the browser to drive (Debian's)
  CONSOLE_SHOTS  a folder for the screenshots (artefacts)

Any dialog (alert, confirm) fails the test: a name that ran as script
would open one. So does any error in the page's console, which is where
Chromium reports what the Content-Security-Policy blocked.
"""

import json
import os
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright

URL = os.environ["CONSOLE_URL"]
TOKEN = os.environ["CONSOLE_TOKEN"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = os.environ["CONSOLE_SHOTS"]
XSS = "<img src=x onerror=alert(1)>"
# Live numbers arrive every 2 s; runs and page loads on a busy machine take longer.
LIVE_MS = 20_000


def api(method, path, body=None):
    """The JSON API with the bearer token (what a run's triggers come through)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + TOKEN)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=20) as res:
        return json.loads(res.read())


def shot(page, name, **kw):
    path = os.path.join(SHOTS, name)
    page.screenshot(path=path, **kw)
    print("screenshot:", path)
    return path


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        # As root (CI) Chromium needs --no-sandbox; /dev/shm may be small in containers.
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


def watched(context):
    """A page whose dialogs and console errors are collected."""
    page = context.new_page()
    page.dialogs = []
    page.errors = []

    def on_dialog(d):
        page.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", on_dialog)
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return page


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    p = watched(context)
    yield p
    assert p.dialogs == [], f"a dialog fired: {p.dialogs}"
    assert p.errors == [], f"errors in the page's console: {p.errors}"


def sign_in(page):
    page.goto(URL + "/")
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()


def test_a_bad_token_is_refused(page, context):
    page.goto(URL + "/")
    page.get_by_label("API token").fill("not-the-token-not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not this server's API token")
    expect(page.get_by_label("API token")).to_be_visible()
    assert context.cookies() == [], "no session for a wrong token"
    assert "not-the-token-not-the-token" not in page.content(), "the token is not echoed"
    # A page behind the session sends the browser back to the form.
    page.goto(URL + "/campaigns/by_api")
    expect(page.get_by_label("API token")).to_be_visible()
    # Chromium logs the refused sign-in's 401 as a failed load: that one was asked for.
    page.errors[:] = [e for e in page.errors if "status of 401" not in e]


def test_sign_in_see_the_campaigns_and_the_cookie(page, context):
    sign_in(page)
    for name in ["by_api", "Onboarding for new sign-ups"]:
        expect(page.get_by_role("link", name=name)).to_be_visible()
    cookie = [c for c in context.cookies() if c["name"] == "flowc_session"]
    assert len(cookie) == 1 and cookie[0]["httpOnly"] and cookie[0]["sameSite"] == "Strict", cookie
    # Scripts cannot read the session cookie.
    assert "flowc_session" not in page.evaluate("document.cookie")
    shot(page, "campaigns.png", full_page=True)


def test_a_count_rises_live_then_pause_and_resume(page):
    sign_in(page)
    page.get_by_role("link", name="by_api").click()
    expect(page.get_by_role("heading", name="by_api")).to_be_visible()
    sent = page.locator('[data-live="step.s.sent"]')
    expect(sent).to_have_text("0")
    # A mark on the window: a reload would lose it, live updates do not.
    page.evaluate("window.flowcMark = 'still here'")
    answer = api("POST", "/v1/campaigns/by_api/trigger", {"contacts": ["c0", "c1", "c2"]})
    assert answer["enrolled"] == 3, answer
    expect(sent).to_have_text("3", timeout=LIVE_MS)
    expect(page.locator('[data-count="s"]')).to_contain_text("3 sent", timeout=LIVE_MS)
    expect(page.locator('[data-live="exec.total"]')).to_have_text("3", timeout=LIVE_MS)
    assert page.evaluate("window.flowcMark") == "still here", "the numbers changed without a reload"
    expect(page.locator("#live-status")).to_contain_text("updated", timeout=LIVE_MS)
    shot(page, "campaign-live.png", full_page=True)

    # Pause, from the keyboard: focus the button, Enter, then confirm.
    badge = page.locator('.title [data-live-state="campaign"]')
    expect(badge).to_have_text("RUNNING")
    page.get_by_role("button", name="Pause…").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Pause by_api?")).to_be_visible()
    shot(page, "confirm-pause.png")
    page.get_by_role("button", name="Yes, pause by_api").click()
    expect(page.get_by_role("status").filter(has_text="Paused.")).to_be_visible()
    expect(badge).to_have_text("PAUSED")
    expect(badge).to_have_attribute("data-state", "PAUSED")
    expect(page.get_by_role("button", name="Pause…")).to_be_disabled()
    expect(page.locator("#pause-why")).to_contain_text("only while RUNNING")
    assert api("GET", "/v1/campaigns/by_api")["state"] == "PAUSED"

    # Resume, and the audit log shows both.
    page.get_by_role("button", name="Resume…").click()
    page.get_by_role("button", name="Yes, resume by_api").click()
    expect(badge).to_have_text("RUNNING")
    expect(page.get_by_role("button", name="Resume…")).to_be_disabled()
    expect(page.locator("table.audit")).to_contain_text("paused by an operator")
    expect(page.locator("table.audit")).to_contain_text("resumed")
    assert api("GET", "/v1/campaigns/by_api")["state"] == "RUNNING"


def test_the_xss_campaign_and_contact_render_as_text(page):
    sign_in(page)
    # On the list, the name is text, not an image.
    expect(page.get_by_text(XSS).first).to_be_visible()
    assert page.locator("img").count() == 0
    page.get_by_role("link", name=XSS).click()
    expect(page.get_by_role("heading", name=XSS)).to_be_visible()
    # In the timeline too (inline SVG): the tag and the name are text nodes.
    expect(page.locator("figure.timeline svg")).to_contain_text(XSS)
    page.get_by_label("Contact id").fill(XSS)
    page.get_by_role("button", name="Look up").click()
    expect(page.locator(".found")).to_contain_text(XSS)
    expect(page.locator(".found")).to_contain_text("not in this campaign")
    assert page.locator("img").count() == 0
    # Give any smuggled script time to run: no dialog must fire.
    page.wait_for_timeout(500)


def test_phone_width_dark_mode_and_the_readme_screenshot(browser):
    for i in range(40):
        api("POST", "/v1/campaigns/onboarding/trigger", {"contacts": [f"c{10 + i}"]})
    ctx = browser.new_context(viewport={"width": 1280, "height": 1100})
    page = watched(ctx)
    sign_in(page)
    page.get_by_role("link", name="Onboarding for new sign-ups").click()
    expect(page.locator('[data-live="step.hello.sent"]')).to_have_text("40", timeout=LIVE_MS)
    expect(page.locator('[data-live="ab.subject.a.entered"]')).not_to_have_text("0", timeout=LIVE_MS)
    # The screenshot the README shows.
    shot(page, "console.png")
    assert page.dialogs == [] and page.errors == [], (page.dialogs, page.errors)
    ctx.close()

    # A phone's width: nothing wider than the screen but the scrolling panels.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark", is_mobile=True)
    page = watched(phone)
    sign_in(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the list is {width}px wide on a 390px screen"
    shot(page, "phone-dark-campaigns.png", full_page=True)
    page.get_by_role("link", name="Onboarding for new sign-ups").click()
    # Measured once the campaign page is there, not while the click's
    # navigation is still on its way.
    expect(page.locator('[data-live="step.hello.sent"]')).to_have_text("40", timeout=LIVE_MS)
    page.wait_for_load_state("load")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the campaign page is {width}px wide on a 390px screen"
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg != "rgb(248, 250, 252)", f"dark mode keeps the light background {bg}"
    shot(page, "phone-dark-campaign.png", full_page=True)
    assert page.dialogs == [] and page.errors == [], (page.dialogs, page.errors)
    phone.close()
