"""Live feeds from an ordinary SSE client (httpx-sse), across two
instances over one database (§16, §14): stan follows his private notes on
instance A, ana hers on instance B. Writes go through either instance.
Each sees only their own changes (never the other's, not even an id), a
change written through B reaches a follower on A within a second, and a
reconnect with Last-Event-ID gets exactly what came after.

Usage: python3 sse_client.py BASE_A BASE_B STAN_TOKEN ANA_TOKEN (exit 0: all good)
"""
import json
import queue
import sys
import threading
import time

import httpx
from httpx_sse import connect_sse

base_a, base_b, stan, ana = sys.argv[1:5]


def check(cond, what):
    if not cond:
        print("FAILED:", what)
        sys.exit(1)
    print("ok:", what)


def follow(base, token, out, stop, last_id=None):
    """Reads the feed into `out` as (kind, id, data, arrival time)."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_id:
        headers["Last-Event-ID"] = last_id
    with httpx.Client(timeout=httpx.Timeout(10.0, read=None)) as client:
        with connect_sse(client, "GET", f"{base}/api/notes", headers=headers) as source:
            out.put(("open", source.response.status_code, None, time.time()))
            for sse in source.iter_sse():
                if stop.is_set():
                    return
                if sse.event in ("created", "updated", "deleted", "end"):
                    out.put((sse.event, sse.id, json.loads(sse.data), time.time()))


def start(base, token, last_id=None):
    out, stop = queue.Queue(), threading.Event()
    t = threading.Thread(target=follow, args=(base, token, out, stop, last_id), daemon=True)
    t.start()
    kind, status, _, _ = out.get(timeout=10)
    check(kind == "open" and status == 200, f"a feed opens on {base}")
    return out, stop


def take(q, n, what, wait=5):
    got = []
    deadline = time.time() + wait
    while len(got) < n and time.time() < deadline:
        try:
            got.append(q.get(timeout=max(0.01, deadline - time.time())))
        except queue.Empty:
            break
    check(len(got) == n, f"{what}: {len(got)} of {n} events {[(k, d) for k, _, d, _ in got]}")
    return got


def quiet(q, what, wait=0.7):
    try:
        extra = q.get(timeout=wait)
        check(False, f"{what}: nothing more, got {extra}")
    except queue.Empty:
        check(True, f"{what}: nothing more")


def write(base, token, method, path, body=None):
    r = httpx.request(method, f"{base}{path}", json=body,
                      headers={"Authorization": f"Bearer {token}"}, timeout=10)
    check(r.status_code < 300, f"{method} {path} through {base}: {r.status_code}")
    return r.json() if r.content else None


stan_feed, stan_stop = start(base_a, stan)
ana_feed, ana_stop = start(base_b, ana)

sent = time.time()
mine = write(base_b, stan, "POST", "/api/notes", {"text": "stan's, through B"})["id"]
hers = write(base_a, ana, "POST", "/api/notes", {"text": "ana's, through A"})["id"]
(kind, first_id, data, arrived), = take(stan_feed, 1, "stan's own note reaches him on A")
check(kind == "created" and data["id"] == mine, "as created, with its id")
check(arrived - sent < 1.0, f"a write through B reached a follower on A in {arrived - sent:.3f} s (< 1 s)")
(kind, _, data, _), = take(ana_feed, 1, "ana's note reaches her on B")
check(kind == "created" and data["id"] == hers, "hers, not his")

write(base_a, ana, "DELETE", f"/api/notes/{hers}")
write(base_a, stan, "PATCH", f"/api/notes/{mine}", {"text": "stan's, edited"})
(kind, _, data, _), = take(ana_feed, 1, "ana's deletion reaches her")
check(kind == "deleted" and data == {"id": hers}, "as deleted, with the key")
(kind, second_id, data, _), = take(stan_feed, 1, "stan's update reaches him")
check(kind == "updated" and data["text"] == "stan's, edited", "the new state")
quiet(stan_feed, "stan never hears of ana's note or its deletion")
quiet(ana_feed, "ana never hears of stan's")
stan_stop.set()

# Stan comes back after his first event: exactly the update, then live.
again, again_stop = start(base_b, stan, last_id=first_id)
(kind, eid, data, _), = take(again, 1, "resumed after the first event")
check(kind == "updated" and eid == second_id, "the update, at the same position")
third = write(base_a, stan, "POST", "/api/notes", {"text": "third"})["id"]
(kind, _, data, _), = take(again, 1, "live after the replay")
check(data["id"] == third, "the new note, once")
quiet(again, "nothing twice")
again_stop.set()
ana_stop.set()
