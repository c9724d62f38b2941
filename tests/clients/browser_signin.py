"""A person at a real browser (headless Chromium, driven by Playwright)
using the browsable API: a page that needs a token offers to sign in;
signing in goes through restkit's own sign-in and consent page; pages and
their first/next links then work with the token kept in an HttpOnly
session cookie (never in a URL); a record is created with the page's form;
an invalid one is answered with a 422 naming the field; signing out ends
it. Screenshots of each step go to OUTDIR for a person to look at.

Usage: python3 browser_signin.py BASE_URL OUTDIR [CHROMIUM]   (exit 0: all good)
"""
import json
import sys
import time

from playwright.sync_api import sync_playwright

base, outdir = sys.argv[1].rstrip("/"), sys.argv[2]
chromium = sys.argv[3] if len(sys.argv) > 3 else "/usr/bin/chromium"


def check(cond, what):
    if not cond:
        print("FAILED:", what)
        sys.exit(1)
    print("ok:", what)


with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path=chromium,
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    )
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    def wait_until(expression, seconds=15):
        # Polled from here: Playwright's own polling evaluates strings in
        # the page, which the page's CSP (rightly) forbids.
        deadline = time.time() + seconds
        while time.time() < deadline:
            if page.evaluate(expression):
                return
            time.sleep(0.05)
        check(False, f"within {seconds} s: {expression}")

    shot = lambda name: page.screenshot(path=f"{outdir}/{name}.png", full_page=True)  # noqa: E731

    res = page.goto(base + "/v1/books?limit=5")
    check(res.status == 401, "a page that needs a token answers 401")
    shot("1-unauthorized")
    page.click("a.signin")
    page.wait_for_selector("input[name=username]")
    check("/v1/authorize" in page.url, "sign-in goes to restkit's own consent page")
    shot("2-sign-in")
    page.fill("input[name=username]", "stan")
    page.fill("input[name=password]", "pass")
    with page.expect_navigation():
        page.click("button[value=approve]")
    page.wait_for_load_state()
    if "/v1/authorize" in page.url:
        print(page.inner_text("body"))
    check(page.url == base + "/v1/books?limit=5", "back on the page the sign-in started from: " + page.url)
    check("HTTP 200" in page.content(), "the page now answers 200")
    check("access" not in page.url and "token" not in page.url, "no token in the URL")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies.get("restkit-session")
    check(session is not None and session["httpOnly"] and session["sameSite"] == "Strict",
          "the token is in an HttpOnly, SameSite=Strict cookie")
    check(page.evaluate("document.cookie").find("restkit-session") < 0,
          "scripts cannot read it")
    shot("3-signed-in")

    page.click("nav.pages a:has-text('next')")
    page.wait_for_load_state()
    check("HTTP 200" in page.content() and ("offset=5" in page.url or "page=2" in page.url),
          "the next page's link works signed in: " + page.url)
    shot("4-next-page")

    # The form made from the declaration: inputs by type, required marks.
    page.goto(base + "/v1/books")
    check(page.locator("#rk-fields input[name=year][type=number]").count() == 1,
          "a number input for an integer field")
    check(page.locator("#rk-fields th:has-text('title') .req").count() == 1,
          "required fields are marked")
    page.fill("#rk-fields input[name=title]", "")
    page.fill("#rk-fields input[name=author]", "Chromium")
    page.fill("#rk-fields input[name=year]", "3000")
    page.click("#rk-fields button[type=submit]")
    wait_until("document.querySelector('[data-error-for=title]').textContent.length > 0")
    title_error = page.inner_text("[data-error-for=title]")
    year_error = page.inner_text("[data-error-for=year]")
    check(title_error != "" and year_error != "",
          f"a 422's errors beside their fields: title '{title_error}', year '{year_error}'")
    shot("5-invalid-beside-fields")
    page.locator("#rk-fields").screenshot(path=f"{outdir}/5b-the-form.png")

    page.fill("#rk-fields input[name=title]", "Made in a browser")
    page.fill("#rk-fields input[name=year]", "1999")
    with page.expect_navigation():
        page.click("#rk-fields button[type=submit]")
    check("/v1/books/" in page.url and "Made in a browser" in page.content(),
          "created with the form; on the new record's page: " + page.url)
    shot("6-created")

    # Its edit form holds its values; a change is saved as a merge patch.
    check(page.input_value("#rk-fields input[name=title]") == "Made in a browser",
          "the edit form is filled with the record")
    page.fill("#rk-fields input[name=author]", "Headless Chromium")
    with page.expect_navigation():
        page.click("#rk-fields button[type=submit]")
    check("Headless Chromium" in page.content(), "edited with the form")
    shot("7-edited")

    # The raw request form still sends any body, and shows the answer.
    page.goto(base + "/v1/books")
    page.select_option("select[name=method]", "POST")
    page.fill("textarea[name=body]", json.dumps({"title": "", "author": "Chromium"}))
    page.click("#rk-send button")
    wait_until("document.body.innerText.includes('HTTP 422')")
    text = page.inner_text("body")
    check("title" in text and "min_length" in text, "the raw form shows a 422 naming the field")

    # /docs: "Try it" opens an operation's URL, signed in.
    page.goto(base + "/docs")
    form = page.locator("form.try[data-template='/v1/books/{id}']").first
    form.locator("input[name=id]").fill("3")
    with page.expect_navigation():
        form.locator("button").click()
    check(page.url == base + "/v1/books/3" and "HTTP 200" in page.content(),
          "try it from /docs opens the record, signed in: " + page.url)
    shot("8-tried-from-docs")

    page.goto(base + "/v1/books?limit=5")
    with page.expect_navigation():
        page.click("form.account button")
    check(page.url == base + "/v1/books?limit=5" and "HTTP 401" in page.content()
          and page.locator("a.signin").count() == 1,
          "sign-out returns to the page, which asks to sign in again: " + page.url)
    shot("9-signed-out")
    browser.close()
