#!/usr/bin/env python3
"""Load on `qiao serve` with wrk, on loopback only, every run bounded in
time: a trivial route (the server's own ceiling), /v1/parse with the
sample bot's classifier (closed loop, 64 connections, and at a paced
offered rate), /v1/chat with the SQLite store, the same good load with bad
requests mixed in (wrong tokens, malformed and oversized bodies, slow
clients) counting every conversation's events afterwards, and with --soak
a long run sampling the server's memory. Prints one table; docs/benchmarks.md
("Issue 20") records a run.

    bench/serve_load.py [--qiao build/bin/qiao] [--model M] [--seconds 60] [--soak 600] [--workers N]
"""
import argparse
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-token-0123456789abcdef"

LUA_CYCLE = r"""
-- Cycles through a file of request bodies (one JSON per line); each thread
-- starts at its own place. For /v1/chat, {SENDER} in a body becomes one of
-- N conversations, so turns of one conversation come one after another.
local bodies, i, n_conv, tid = {}, 0, tonumber(os.getenv("QIAO_CONVS") or "0"), 0
local pace = tonumber(os.getenv("QIAO_PACE_MS") or "0")
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end
function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  i = (tid * 7919) % #bodies
end
function delay()
  -- Spread around the pace, so the connections do not fall into waves.
  return pace * (0.5 + math.random())
end
function request()
  i = i % #bodies + 1
  local b = bodies[i]
  if n_conv > 0 then
    b = b:gsub("{SENDER}", "load-" .. tid .. "-" .. (i % n_conv))
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. os.getenv("QIAO_TOKEN")}, b)
end
"""

LUA_BAD = r"""
-- Bad requests in turn: no token, a wrong token, malformed JSON, invalid
-- UTF-8, a wrong type, an oversized body.
local big = '{"text": "' .. string.rep("x", 80000) .. '"}'
local reqs = {
  wrk.format("POST", "/v1/parse", {}, '{"text": "hi"}'),
  wrk.format("POST", "/v1/parse", {["Authorization"] = "Bearer wrong-token-0123456789"}, '{"text": "hi"}'),
  wrk.format("POST", "/v1/parse", {["Authorization"] = "Bearer " .. os.getenv("QIAO_TOKEN")}, '{"text": '),
  wrk.format("POST", "/v1/chat", {["Authorization"] = "Bearer " .. os.getenv("QIAO_TOKEN")},
             '{"sender_id": "bad", "message": "\255\254"}'),
  wrk.format("POST", "/v1/chat", {["Authorization"] = "Bearer " .. os.getenv("QIAO_TOKEN")},
             '{"sender_id": 5, "message": "x"}'),
  wrk.format("POST", "/v1/parse", {["Authorization"] = "Bearer " .. os.getenv("QIAO_TOKEN")}, big),
}
local i = 0
function delay()
  return tonumber(os.getenv("QIAO_BAD_PACE_MS") or "0")
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
"""


def wrk(url, seconds, conns, script=None, args=(), env=None, threads=1):
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if script:
        cmd += ["-s", script]
    cmd += [url]
    if args:
        cmd += ["--", *args]
    e = dict(os.environ, QIAO_TOKEN=TOKEN, **(env or {}))
    out = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=seconds + 60).stdout

    def ms(label):
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    total = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"requests": int(total.group(1)) if total else 0, "rps": float(rps.group(1)) if rps else 0.0,
            "p50": ms(50), "p99": ms(99), "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "sockerr": sum(int(x) for x in sock.groups()) if sock else 0, "raw": out}


class Service:
    def __init__(self, qiao, work, model, workers, threads):
        self.work = work
        tokens = os.path.join(work, "tokens")
        with open(tokens, "w") as f:
            f.write(f"{TOKEN} bench\n")
        os.chmod(tokens, 0o600)
        self.store = os.path.join(work, "conv.sqlite")
        port_file = os.path.join(work, "port")
        cmd = [qiao, "serve", "--bot", os.path.join(ROOT, "apps/chatbot/ecommerce.yml"), "--tokens", tokens,
               "--store", self.store, "--orders", os.path.join(work, "orders.sqlite"), "--listen", "127.0.0.1:0",
               "--port-file", port_file, "--quiet", "--rate", "0", "--max-body", "65536", "--timeout", "5",
               "--threads", str(threads)]
        if workers:
            cmd += ["--workers", str(workers)]
        if model:
            cmd += ["--model", model]
        self.log = open(os.path.join(work, "serve.log"), "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                sys.exit("qiao serve did not start: " + open(self.log.name).read())
            time.sleep(0.05)
        self.port = int(open(port_file).read())
        self.url = f"http://127.0.0.1:{self.port}"

    def chat_ok(self):
        """Turns the service answered 200 (its /metrics), in flight at wrk's end included."""
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request("GET", "/metrics", headers={"Authorization": "Bearer " + TOKEN})
        text = c.getresponse().read().decode()
        c.close()
        m = re.search(r'qiao_http_requests_total\{route="chat",code="200"\} (\d+)', text)
        return int(m.group(1)) if m else 0

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def slow_clients(port, n, stop):
    """n connections that send half a request, one byte every second."""
    socks = []
    while not stop.is_set():
        while len(socks) < n:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.sendall(b"POST /v1/parse HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n")
                socks.append(s)
            except OSError:
                break
        for s in list(socks):
            try:
                s.sendall(b"X")
            except OSError:
                socks.remove(s)
                s.close()
        stop.wait(1.0)
    for s in socks:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qiao", default=os.path.join(ROOT, "build/bin/qiao"))
    ap.add_argument("--model", help="the classifier instead of the sample bot's committed one")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--soak", type=int, default=0, help="seconds of mixed load sampling memory (0: none)")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rate", type=float, default=2000, help="the paced run's offered requests a second")
    ap.add_argument("--runs", default="healthz,parse,paced,chat,abuse",
                    help="which runs, of healthz, parse, paced, chat, abuse (the soak is --soak)")
    ap.add_argument("--bad-rate", type=float, default=200, help="the abuse run's bad requests a second")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="qiao-serve-load-")
    lua = os.path.join(work, "cycle.lua")
    with open(lua, "w") as f:
        f.write(LUA_CYCLE)
    bad_lua = os.path.join(work, "bad.lua")
    with open(bad_lua, "w") as f:
        f.write(LUA_BAD)
    texts = [json.loads(line)["text"] for line in open(os.path.join(ROOT, "datasets/intent/ecommerce_zh/test.jsonl"))]
    parse_bodies = os.path.join(work, "parse.jsonl")
    chat_bodies = os.path.join(work, "chat.jsonl")
    with open(parse_bodies, "w") as f:
        f.writelines(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts)
    with open(chat_bodies, "w") as f:
        f.writelines(json.dumps({"sender_id": "{SENDER}", "message": t}, ensure_ascii=False) + "\n" for t in texts)

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = re.search(r"Model name:\s+(.*)", lscpu)
    print(f"CPU: {cpu.group(1) if cpu else '?'}, {os.cpu_count()} cores; load average before: "
          f"{os.getloadavg()[0]:.2f}; wrk on the same cores; {a.seconds} s per run")
    srv = Service(a.qiao, work, a.model, a.workers, a.threads)
    rows = []

    def row(name, r, extra=""):
        rows.append((name, r, extra))
        print(f"  {name}: {r['rps']:.0f} req/s, p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, "
              f"non-2xx {r['non2xx']}, socket errors {r['sockerr']} {extra}", flush=True)

    try:
        wrk(srv.url + "/v1/parse", 3, 8, lua, [parse_bodies])  # warm up
        runs = set(a.runs.split(","))
        if "healthz" in runs:
            row("GET /healthz (the server's ceiling)", wrk(srv.url + "/healthz", min(a.seconds, 15), 64))
        if "parse" in runs:
            row("POST /v1/parse, 64 connections", wrk(srv.url + "/v1/parse", a.seconds, 64, lua, [parse_bodies]))
        # Each connection waits `pace` before its next request, so the rate is
        # 64 / (pace + latency): with about 2 ms of latency, the offered rate.
        pace = max(0.0, 64 * 1000.0 / a.rate - 2)
        if "paced" in runs:
            row(f"POST /v1/parse, 64 connections paced to {a.rate:.0f}/s",
                wrk(srv.url + "/v1/parse", a.seconds, 64, lua, [parse_bodies], {"QIAO_PACE_MS": f"{pace:.1f}"}))
        if "chat" in runs:
            before, ok0 = sqlite_turns(srv.store), srv.chat_ok()
            r = wrk(srv.url + "/v1/chat", a.seconds, 64, lua, [chat_bodies], {"QIAO_CONVS": "50"})
            time.sleep(1)
            turns, ok = sqlite_turns(srv.store) - before, srv.chat_ok() - ok0
            row("POST /v1/chat (SQLite store), 64 connections", r, f"({turns} turns stored, {ok} answered 200)")
        # Good load with abuse beside it.
        if "abuse" in runs:
            stop = threading.Event()
            slow = threading.Thread(target=slow_clients, args=(srv.port, 32, stop))
            slow.start()
            bad = {}
            bad_pace = 8 * 1000.0 / a.bad_rate if a.bad_rate > 0 else 0
            bt = threading.Thread(target=lambda: bad.update(wrk(srv.url + "/v1/parse", a.seconds, 8, bad_lua,
                                                                env={"QIAO_BAD_PACE_MS": f"{bad_pace:.0f}"})))
            bt.start()
            before, ok0 = sqlite_turns(srv.store), srv.chat_ok()
            r = wrk(srv.url + "/v1/chat", a.seconds, 56, lua, [chat_bodies], {"QIAO_CONVS": "50"})
            bt.join()
            stop.set()
            slow.join()
            time.sleep(1)
            turns, ok = sqlite_turns(srv.store) - before, srv.chat_ok() - ok0
            row(f"POST /v1/chat, 56 connections, beside bad requests ({a.bad_rate:.0f}/s offered) and 32 slow clients", r,
                f"({turns} turns stored, {ok} answered 200; the bad: {bad.get('rps', 0):.0f}/s, "
                f"{bad.get('requests', 0) - bad.get('non2xx', 0)} of {bad.get('requests', 0)} not refused)")
        if a.soak:
            samples = []
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    samples.append((time.time(), srv.rss_mib()))
                    stop.wait(10)

            st = threading.Thread(target=sample)
            st.start()
            r = wrk(srv.url + "/v1/chat", a.soak, 32, lua, [chat_bodies], {"QIAO_CONVS": "500"})
            stop.set()
            st.join()
            first = [m for t, m in samples[: max(1, len(samples) // 10)]]
            last = [m for t, m in samples[-max(1, len(samples) // 10):]]
            row(f"soak: POST /v1/chat for {a.soak} s, 32 connections", r,
                f"(RSS {min(first):.0f}-{max(first):.0f} MiB in the first tenth, {min(last):.0f}-{max(last):.0f} "
                f"MiB in the last; {len(samples)} samples)")
    finally:
        rc = srv.stop()
    print(f"\nqiao serve exited {rc}; load average after: {os.getloadavg()[0]:.2f}\n")
    print("| load | requests | req/s | p50 ms | p99 ms | non-2xx | socket errors | notes |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r, extra in rows:
        print(f"| {name} | {r['requests']} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['non2xx']} | "
              f"{r['sockerr']} | {extra.strip('()')} |")


def sqlite_turns(path):
    db = sqlite3.connect(path, timeout=30)
    n = db.execute("SELECT count(*) FROM qiao_events").fetchone()[0]
    db.close()
    return n


if __name__ == "__main__":
    main()
