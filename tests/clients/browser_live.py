"""Live changes in a real browser (§16): headless Chromium, driven by
Playwright, opens a collection's browsable page and presses "Follow live"
(the page's EventSource). Changes written through the API arrive as
created, updated and deleted, in order. Then the server is stopped, two
changes are made through a second instance over the same database while it
is down, and the server is started again: the browser's own reconnect
(EventSource, with Last-Event-ID) receives exactly those two, once each,
and goes on live.

Usage: python3 browser_live.py RESTKIT_BINARY CONFIG ADDR_A ADDR_B OUTDIR [CHROMIUM]
(exit 0: all good). Starts and stops both servers itself.
"""
import json
import subprocess
import sys
import time
import urllib.request

from playwright.sync_api import sync_playwright

binary, config, addr_a, addr_b, outdir = sys.argv[1:6]
chromium = sys.argv[6] if len(sys.argv) > 6 else "/usr/bin/chromium"


def check(cond, what):
    if not cond:
        print("FAILED:", what)
        sys.exit(1)
    print("ok:", what)


def start(addr):
    return subprocess.Popen(
        [binary, "serve", "--config", config, "--bind", addr],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_up(addr):
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://{addr}/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    check(False, f"the server on {addr} came up")


def api(addr, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"http://{addr}{path}", data=data, method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read()
        return json.loads(text) if text else None


servers = []
try:
    a = start(addr_a)
    b = start(addr_b)
    servers += [a, b]
    wait_up(addr_a)
    wait_up(addr_b)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        res = page.goto(f"http://{addr_a}/api/notes")
        check(res.status == 200, "the collection's page opens")
        page.click("#rk-live button")

        def wait_hint(ok, what):
            # Polled from here: the page's CSP forbids evaluated strings.
            deadline = time.time() + 15
            hint = ""
            while time.time() < deadline:
                hint = page.text_content("#rk-live .hint") or ""
                if ok(hint):
                    break
                time.sleep(0.05)
            check(ok(hint), f"{what} (status: {hint!r})")

        def events():
            # Newest first on the page: oldest first here.
            return list(reversed(page.eval_on_selector_all(
                "#rk-live li", "els => els.map(e => e.textContent)")))

        def wait_events(n, what):
            deadline = time.time() + 15
            while time.time() < deadline and len(events()) < n:
                time.sleep(0.05)
            got = events()
            check(len(got) == n, f"{what}: {len(got)} events, expected {n}: {got}")
            return got

        wait_hint(lambda h: h == "following", "the page follows the collection (EventSource open)")
        # Each change seen before the next: the feed reports states, so a
        # record made and deleted between two reads comes only as deleted.
        one = api(addr_a, "POST", "/api/notes", {"text": "one"})["id"]
        wait_events(1, "a creation arrives")
        api(addr_a, "PATCH", f"/api/notes/{one}", {"text": "one, edited"})
        wait_events(2, "an update arrives")
        two = api(addr_a, "POST", "/api/notes", {"text": "two"})["id"]
        wait_events(3, "another creation arrives")
        api(addr_a, "DELETE", f"/api/notes/{two}")
        got = wait_events(4, "a deletion arrives")
        kinds = [e.split(" ", 1)[0] for e in got]
        data = [json.loads(e.split(" ", 1)[1]) for e in got]
        check(kinds == ["created", "updated", "created", "deleted"], f"in order: {kinds}")
        check(data[1]["text"] == "one, edited" and data[3] == {"id": two},
              "each as the list shows it; a deletion names the key")
        page.screenshot(path=f"{outdir}/live-1-following.png", full_page=True)

        # The server goes away; changes happen elsewhere meanwhile.
        a.terminate()
        a.wait(timeout=20)
        wait_hint(lambda h: "reconnecting" in h, "the page saw the server go and is reconnecting")
        three = api(addr_b, "POST", "/api/notes", {"text": "three (while away)"})["id"]
        api(addr_b, "PATCH", f"/api/notes/{one}", {"text": "one, edited while away"})
        a = start(addr_a)
        servers.append(a)
        wait_up(addr_a)
        got = wait_events(6, "after the reconnect, what happened meanwhile")
        tail = [(e.split(" ", 1)[0], json.loads(e.split(" ", 1)[1])) for e in got[4:]]
        check([k for k, _ in tail] == ["created", "updated"]
              and tail[0][1]["id"] == three and tail[1][1]["id"] == one,
              f"exactly the two changes made while away, once each: {tail}")
        wait_hint(lambda h: h == "following", "following again")
        four = api(addr_a, "POST", "/api/notes", {"text": "four"})["id"]
        got = wait_events(7, "live again after the replay")
        check(json.loads(got[6].split(" ", 1)[1])["id"] == four, "the next change, once")
        time.sleep(0.5)
        check(len(events()) == 7, "nothing twice")
        page.screenshot(path=f"{outdir}/live-2-resumed.png", full_page=True)
        browser.close()
finally:
    for s in servers:
        s.terminate()
        try:
            s.wait(timeout=10)
        except subprocess.TimeoutExpired:
            s.kill()
