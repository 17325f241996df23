#!/usr/bin/env python3
"""`qiao serve` end to end on the sample shop's bot: every route's answer,
tokens (missing, wrong, revoked by SIGHUP), bad requests of every kind
(each a 4xx naming what is wrong, none a crash), a slow client that does
not stall the others, many clients on one conversation losing no event, the
rate limit, the limit on failed authentications per client address,
metrics, a SIGTERM that finishes the request in flight, a backlog of
classifications that holds no /healthz up, clients that leave
mid-request by the hundred beside good traffic, a SIGTERM that answers
the queued requests, and a full queue answered 503 with Retry-After.

    test_serve.py QIAO_BIN BOT_FILE WORK_DIR [--threads-only]

--threads-only runs the part about threads alone (a few clients on every
kind of route at once, a few leaving mid-request, a SIGHUP and a SIGTERM in
the middle of them), short enough for ThreadSanitizer's build.

Python's standard library only; every wait is bounded."""
import base64
import http.client
import math
import json
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time

QIAO, BOT, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN_A = "alice-token-0123456789abcdef"
TOKEN_B = "bob-token-0123456789abcdefgh"
MAX_BODY = 65536
failures = []
started = []  # every service process, killed if the test runs out of time


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


class Server:
    def __init__(self, name, *extra):
        self.dir = os.path.join(WORK, name)
        os.makedirs(self.dir, exist_ok=True)
        for f in os.listdir(self.dir):
            os.remove(os.path.join(self.dir, f))
        self.tokens = os.path.join(self.dir, "tokens")
        with open(self.tokens, "w") as f:
            f.write(f"# the test's tokens\n{TOKEN_A} alice\n{TOKEN_B} bob\n")
        os.chmod(self.tokens, 0o600)
        self.store = os.path.join(self.dir, "conv.sqlite")
        port_file = os.path.join(self.dir, "port")
        self.log = open(os.path.join(self.dir, "log"), "w")
        store = [] if "--redis" in extra else ["--store", self.store]
        self.proc = subprocess.Popen(
            [QIAO, "serve", "--bot", BOT, "--tokens", self.tokens, *store,
             "--orders", os.path.join(self.dir, "orders.sqlite"), "--listen", "127.0.0.1:0",
             "--port-file", port_file, "--workers", "2", "--max-body", str(MAX_BODY), "--timeout", "2",
             *extra], stdout=self.log, stderr=subprocess.STDOUT)
        started.append(self.proc)
        deadline = time.time() + 60
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"qiao serve did not start: {open(self.log.name).read()}")
            time.sleep(0.05)
        self.port = int(open(port_file).read())

    def request(self, method, path, body=None, token=TOKEN_A, headers=None, raw=None, source=None, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout,
                                       source_address=(source, 0) if source else None)
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        data = raw if raw is not None else (json.dumps(body, ensure_ascii=False).encode() if body is not None else None)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        text = r.read()
        c.close()
        try:
            j = json.loads(text)
        except ValueError:
            j = None
        return r.status, j, r, text

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def leave_mid_request(port, i):
    """Sends a /v1/parse or (one time in four) a /v1/chat and closes the
    socket without reading the answer: after the whole request, or one time
    in five halfway through its body; one time in three with a reset."""
    if i % 4 == 3:
        body, path = json.dumps({"sender_id": f"gone-{i}", "message": "你好"}).encode(), "/v1/chat"
    else:
        body, path = json.dumps({"text": "我想退货，订单号1234567890123456"}).encode(), "/v1/parse"
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN_A}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(head + (body[: len(body) // 2] if i % 5 == 4 else body))
    if i % 3 == 0:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def read_all(s):
    """What comes back on socket s until the peer closes it (or its timeout); closes s."""
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    s.close()
    return out


def raw_exchange(port, data, read_timeout=10):
    """Sends bytes on a fresh connection; returns what came back before it closed."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    s.sendall(data)
    return read_all(s)


def error_of(j):
    return (j or {}).get("error", {})


def test_routes(srv):
    st, j, _, _ = srv.request("GET", "/healthz", token=None)
    check(st == 200 and j["status"] == "ok" and j["models"]["bot"], "GET /healthz without a token")
    st, j, _, _ = srv.request("POST", "/v1/parse", {"text": "我想退货，订单号1234567890123456"})
    check(st == 200 and j["intent"]["name"] == "return_request", "parse: the intent")
    check(abs(sum(x["confidence"] for x in j["intent_ranking"]) - 1) < 0.2 and len(j["intent_ranking"]) == 10,
          "parse: Rasa's intent_ranking (10 by default)")
    ents = [e for e in j["entities"] if e["entity"] == "order_id"]
    check(bool(ents) and j["text"][ents[0]["start"]:ents[0]["end"]] == ents[0]["value"],
          "parse: an entity's start/end count characters, as Rasa's do")
    check(j["out_of_scope"] is False, "parse: in scope")
    st, j, _, _ = srv.request("POST", "/v1/parse", {"text": "hello", "top_k": 3, "context": ["你好"]})
    check(st == 200 and len(j["intent_ranking"]) == 3, "parse: top_k and context")
    for route in ("/v1/embed", "/v1/search", "/v1/vqa", "/v1/caption"):
        st, j, _, _ = srv.request("POST", route, {"text": "x"})
        check(st == 503 and "is loaded" in error_of(j).get("message", ""), f"{route} without its model: 503")


def test_conversation(srv):
    c = "web-用户 42"
    path = "/v1/conversations/" + "web-%E7%94%A8%E6%88%B7%2042"
    st, j, _, _ = srv.request("POST", "/v1/chat", {"sender_id": c, "message": "你好"})
    check(st == 200 and j["messages"] and j["messages"][0]["recipient_id"] == c and j["intent"] == "greeting",
          "chat: a greeting answered")
    check(j["said"] == 1 + len(j["messages"]), f"chat: said counts the customer's line and the bot's ({j['said']})")
    said = j["said"]
    st, j, _, _ = srv.request("POST", "/v1/chat", {"sender_id": c, "message": "我要退货"})
    check(st == 200 and j["action"].startswith("form:return"), "chat: a form starts")
    check(j["said"] == said + 1 + len(j["messages"]), f"chat: said goes on from the last turn ({j['said']})")
    st, j, _, _ = srv.request("POST", "/v1/chat", {"sender_id": c, "message": "转人工"})
    check(st == 200 and j["paused"] is True, "chat: handed to a human")
    st, j, _, _ = srv.request("POST", "/v1/chat", {"sender_id": c, "message": "还在吗？"})
    check(st == 200 and j["messages"] == [] and j["action"] == "queued", "chat: paused, the message is queued")
    st, j, _, _ = srv.request("GET", "/v1/conversations?paused=1")
    mine = [x for x in j["conversations"] if x["sender_id"] == c]
    check(st == 200 and mine and mine[0]["queue"] == ["还在吗？"] and mine[0]["last"] == "还在吗？",
          "the console's list: the paused conversation and its queue")
    st, j, _, _ = srv.request("POST", path + "/reply", {"text": "您好，我是客服小王", "agent": "小王"})
    check(st == 200 and j["said"] > 0, "an agent's reply")
    reply_said = j["said"]
    st, j, _, _ = srv.request("GET", path)
    agent = [t for t in j["transcript"] if t["from"] == "agent"]
    check(agent and reply_said == agent[-1]["n"] == j["said"], f"an agent's reply: said is its line's number "
          f"({reply_said})")
    check(st == 200 and agent and agent[-1]["text"] == "您好，我是客服小王" and agent[-1]["agent"] == "小王",
          "the transcript holds the agent's reply for the chat page")
    check([t["n"] for t in j["transcript"]] == list(range(1, len(j["transcript"]) + 1)), "the transcript is numbered")
    st, j, _, _ = srv.request("POST", path + "/resume")
    check(st == 200 and j["paused"] is False and j["messages"], "resume: the bot picks up")
    check(j["said"] == reply_said + len(j["messages"]), f"resume: said counts the bot's lines ({j['said']})")
    resumed_said = j["said"]
    st, j, _, _ = srv.request("GET", path)
    check(st == 200 and j["said"] == resumed_said == j["transcript"][-1]["n"], "resume: said as stored")
    st, j, _, _ = srv.request("GET", "/v1/conversations?paused=1")
    check(st == 200 and not [x for x in j["conversations"] if x["sender_id"] == c], "resumed: off the list")
    st, j, _, _ = srv.request("POST", "/v1/conversations/nobody/handoff")
    check(st == 404, "handoff of an unknown conversation: 404")
    st, j, _, _ = srv.request("POST", "/v1/conversations/nobody/reply", {"text": "hi"})
    check(st == 404, "reply to an unknown conversation: 404")
    st, j, _, _ = srv.request("DELETE", path)
    check(st == 200 and j["forgotten"], "DELETE forgets")
    st, j, _, _ = srv.request("GET", path)
    check(st == 404, "a forgotten conversation: 404")


def test_tokens(srv):
    st, j, r, _ = srv.request("POST", "/v1/parse", {"text": "hi"}, token=None)
    check(st == 401 and r.getheader("WWW-Authenticate", "").startswith("Bearer"), "no token: 401 with WWW-Authenticate")
    st, j, _, _ = srv.request("POST", "/v1/parse", {"text": "hi"}, token=TOKEN_A[:-1] + "x")
    check(st == 401, "a wrong token: 401")
    st, j, _, _ = srv.request("POST", "/v1/parse", {"text": "hi"}, token=TOKEN_A + "x")
    check(st == 401, "a token with a byte more: 401")
    st, j, _, _ = srv.request("POST", "/v1/parse", {"text": "hi"}, headers={"Authorization": "Basic eDp5"}, token=None)
    check(st == 401, "Basic auth: 401")
    st, _, _, _ = srv.request("GET", "/metrics", token=None)
    check(st == 401, "/metrics needs a token")


def test_bad_requests(srv):
    def bad(what, status, *args, field=None, **kw):
        st, j, _, text = srv.request(*args, **kw)
        e = error_of(j)
        ok = st == status and e.get("status") == status and e.get("message")
        if field:
            ok = ok and e.get("field") == field
        check(ok, f"{what}: {status}" + (f" naming '{field}'" if field else "") + ("" if ok else f" (got {st} {text[:200]!r})"))

    bad("malformed JSON", 400, "POST", "/v1/chat", raw=b'{"sender_id": "x", ')
    bad("JSON with text after it", 400, "POST", "/v1/chat", raw=b'{"sender_id": "x", "message": "y"} {}')
    bad("not an object", 400, "POST", "/v1/chat", raw=b'["x"]')
    bad("an empty body", 400, "POST", "/v1/chat", raw=b"")
    bad("invalid UTF-8", 400, "POST", "/v1/chat", raw=b'{"sender_id": "x", "message": "\xff\xfe"}')
    bad("a NUL byte", 400, "POST", "/v1/chat", raw=b'{"sender_id": "x", "message": "a\x00b"}')
    bad("a lone surrogate escape", 400, "POST", "/v1/chat", raw=b'{"sender_id": "x", "message": "\\ud800"}')
    bad("a missing field", 400, "POST", "/v1/chat", {"sender_id": "x"}, field="message")
    bad("a wrong type", 400, "POST", "/v1/chat", {"sender_id": 7, "message": "hi"}, field="sender_id")
    bad("an empty message", 400, "POST", "/v1/chat", {"sender_id": "x", "message": ""}, field="message")
    bad("a 300-byte id", 413, "POST", "/v1/chat", {"sender_id": "x" * 300, "message": "hi"}, field="sender_id")
    bad("a 5000-byte message", 413, "POST", "/v1/chat", {"sender_id": "x", "message": "字" * 2000}, field="message")
    bad("a wrong top_k", 400, "POST", "/v1/parse", {"text": "hi", "top_k": 1.5}, field="top_k")
    bad("context of numbers", 400, "POST", "/v1/parse", {"text": "hi", "context": [1]}, field="context")
    bad("deep nesting", 400, "POST", "/v1/chat", raw=b"[" * 5000 + b"]" * 5000)
    bad("an unknown route", 404, "GET", "/v1/nothing")
    bad("an unknown page", 404, "GET", "/etc/passwd", token=None)
    bad("a wrong method", 405, "GET", "/v1/chat")
    bad("?paused missing", 400, "GET", "/v1/conversations", field="paused")
    bad("a body over --max-body", 413, "POST", "/v1/chat", raw=b"{" + b" " * (MAX_BODY + 10) + b"}")
    # A chunked body (no Content-Length) that grows past the limit.
    out = raw_exchange(srv.port, (f"POST /v1/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN_A}\r\n"
                                  "Transfer-Encoding: chunked\r\n\r\n").encode()
                       + b"".join(b"%x\r\n%s\r\n" % (8192, b" " * 8192) for _ in range(12)) + b"0\r\n\r\n")
    check(out.startswith(b"HTTP/1.1 413"), f"a chunked body over --max-body: 413 (got {out[:40]!r})")
    out = raw_exchange(srv.port, b"GARBAGE\r\n\r\n")
    check(out == b"" or out.startswith(b"HTTP/1.1 400"), "a request line that is not HTTP: closed or 400")
    out = raw_exchange(srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
    check(out == b"" or out[:12] in (b"HTTP/1.1 413", b"HTTP/1.1 431", b"HTTP/1.1 400"),
          f"a 70 kB header: refused ({out[:20]!r})")
    st, j, _, _ = srv.request("GET", "/healthz", token=None)
    check(st == 200, "still healthy after the bad requests")


def test_slow_client(srv):
    # A client that sends half a request and stops: the others go on, and
    # it is dropped after --timeout.
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(f"POST /v1/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN_A}\r\n"
              "Content-Length: 100\r\n\r\n{\"sender".encode())
    t0 = time.time()
    st, _, _, _ = srv.request("POST", "/v1/parse", {"text": "你好"})
    check(st == 200 and time.time() - t0 < 2, "a slow client does not hold the others up")
    s.settimeout(8)
    try:
        got = s.recv(100)
    except socket.timeout:
        got = None
    check(got == b"" or (got or b"").startswith(b"HTTP/1.1 408"),
          f"the slow client is dropped after --timeout ({time.time() - t0:.1f} s)")
    s.close()


def test_one_conversation_many_clients(srv):
    # Eight clients send on one conversation at once: the service retries a
    # turn that lost the race, so every message is a turn and none is lost.
    conv = "crowd"
    n_threads, per = 8, 6
    statuses = []
    lock = threading.Lock()

    def client(k):
        for i in range(per):
            st, _, _, _ = srv.request("POST", "/v1/chat", {"sender_id": conv, "message": f"查一下物流 {k}-{i}"})
            with lock:
                statuses.append(st)

    ts = [threading.Thread(target=client, args=(k,)) for k in range(n_threads)]
    [t.start() for t in ts]
    [t.join(timeout=120) for t in ts]
    check(statuses.count(200) == n_threads * per, f"{n_threads}x{per} turns on one conversation: all 200 "
          f"({sorted(set(statuses))})")
    db = sqlite3.connect(srv.store)
    turns = db.execute("SELECT count(*) FROM qiao_events WHERE conversation = ?", (conv,)).fetchone()[0]
    users = sum(json.loads(e).__str__().count("'event': 'user'") for (e,) in
                db.execute("SELECT events FROM qiao_events WHERE conversation = ?", (conv,)))
    db.close()
    check(turns == n_threads * per and users == n_threads * per, f"every turn's events are stored ({turns} turns, "
          f"{users} user events)")


def test_metrics(srv):
    st, _, _, text = srv.request("GET", "/metrics")
    t = text.decode()
    check(st == 200 and 'qiao_http_requests_total{route="chat",code="200"}' in t and
          'qiao_http_request_duration_seconds_bucket{route="parse",le="+Inf"}' in t and
          "qiao_model_load_seconds" in t and "qiao_auth_failures_total" in t, "/metrics in Prometheus text")


def test_reload(srv):
    st, _, _, _ = srv.request("POST", "/v1/parse", {"text": "hi"}, token=TOKEN_B)
    check(st == 200, "bob's token works")
    with open(srv.tokens, "w") as f:
        f.write(f"{TOKEN_A} alice\n")
    srv.proc.send_signal(signal.SIGHUP)
    deadline, st = time.time() + 20, 200
    while time.time() < deadline and st == 200:
        st, _, _, _ = srv.request("POST", "/v1/parse", {"text": "hi"}, token=TOKEN_B)
        time.sleep(0.05)
    check(st == 401, "SIGHUP: bob's revoked token is refused")
    st, _, _, _ = srv.request("POST", "/v1/parse", {"text": "hi"}, token=TOKEN_A)
    check(st == 200, "SIGHUP: alice's token still works")
    with open(srv.tokens, "w") as f:
        f.write("short\n")
    srv.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    st, _, _, _ = srv.request("POST", "/v1/parse", {"text": "hi"}, token=TOKEN_A)
    check(st == 200 and srv.proc.poll() is None, "SIGHUP with a bad file keeps the tokens it had")


def test_rate_limit():
    srv = Server("rate", "--rate", "5", "--burst", "10")
    try:
        codes = [srv.request("GET", "/v1/conversations/none")[0] for _ in range(30)]
        st, _, r, _ = srv.request("GET", "/v1/conversations/none")
        check(codes.count(404) >= 10 and codes.count(429) >= 10 and st == 429 and r.getheader("Retry-After"),
              f"a token over its rate: 429 with Retry-After ({codes.count(404)} passed, {codes.count(429)} refused)")
        st, _, _, _ = srv.request("GET", "/v1/conversations/none", token=TOKEN_B)
        check(st == 404, "another token keeps its own budget")
    finally:
        srv.stop()


def test_auth_fail_limit():
    # Wrong tokens from one address: the first --auth-fail-burst are 401,
    # then 429 with Retry-After; a good token from that address still
    # passes, and another address keeps its own bucket. Refilled at 0.5 a
    # second, so at most a few of the refusals turn back into 401s while the
    # test runs. Loopback only: 127.0.0.2 is another address of this host.
    burst, sent = 5, 12
    srv = Server("auth-fail", "--auth-fail-rate", "0.5", "--auth-fail-burst", str(burst))
    try:
        answers = [srv.request("POST", "/v1/parse", {"text": "hi"}, token=f"wrong-token-{i:016d}") for i in range(sent)]
        codes = [a[0] for a in answers]
        limited = codes.count(429)
        check(codes[:burst] == [401] * burst and codes[-1] == 429 and limited >= sent - burst - 2,
              f"wrong tokens over --auth-fail-burst: 429 ({codes})")
        last = answers[-1]
        check(error_of(last[1]).get("status") == 429 and "failed authentications" in error_of(last[1]).get("message", "")
              and int(last[2].getheader("Retry-After", "0")) >= 1, "the 429: the usual error body and Retry-After")
        st, _, r, _ = srv.request("POST", "/v1/parse", {"text": "hi"}, token=None)
        check(st == 429, f"a missing token from the same address: 429 too ({st})")
        st, j, _, _ = srv.request("POST", "/v1/parse", {"text": "hi"})
        check(st == 200 and j["intent"]["name"], f"a good token from the same address: 200 ({st})")
        st, _, _, _ = srv.request("POST", "/v1/parse", {"text": "hi"}, token="wrong-token-other-address", source="127.0.0.2")
        check(st == 401, f"another address keeps its own bucket: 401 ({st})")
        st, _, _, text = srv.request("GET", "/metrics")
        m = dict(line.rsplit(" ", 1) for line in text.decode().splitlines() if line and not line.startswith("#"))
        check(st == 200 and int(m.get("qiao_auth_fail_limited_total", -1)) == limited + 1 and
              int(m.get("qiao_auth_failures_total", -1)) == codes.count(401) + 1 and
              m.get('qiao_http_requests_total{route="parse",code="429"}') == str(limited + 1),
              "/metrics counts the refusals by their reason")
        rc = srv.stop()
        check(rc == 0, f"auth-fail: the service stops cleanly (got {rc})")
    finally:
        srv.stop()
    srv = Server("auth-fail-off", "--auth-fail-rate", "0")
    try:
        codes = [srv.request("GET", "/metrics", token=f"wrong-token-{i:016d}")[0] for i in range(25)]
        check(codes == [401] * 25, f"--auth-fail-rate 0: no limit ({sorted(set(codes))})")
    finally:
        srv.stop()


def test_graceful_stop(srv):
    # A request whose body is still arriving when SIGTERM comes is answered,
    # then the service exits 0 with the turn stored.
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    body = json.dumps({"sender_id": "last", "message": "你好"}).encode()
    s.sendall(f"POST /v1/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN_A}\r\n"
              f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body[:10])
    time.sleep(0.2)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    s.sendall(body[10:])
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        pass
    s.close()
    check(got.startswith(b"HTTP/1.1 200"), "SIGTERM: the request in flight is answered")
    rc = srv.stop()
    check(rc == 0, f"SIGTERM: exit 0 (got {rc})")
    db = sqlite3.connect(srv.store)
    n = db.execute("SELECT count(*) FROM qiao_conversations WHERE id = 'last'").fetchone()[0]
    db.close()
    check(n == 1, "SIGTERM: the last turn is in the store")
    try:
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
        refused = False
    except OSError:
        refused = True
    check(refused, "stopped: the port is closed")


def test_queue_holds_no_loop(srv):
    # One worker and a backlog of classifications on 24 connections: the
    # epoll loops only speak HTTP, so a /healthz from another connection is
    # answered at once, not after the parses its loop received before it
    # (the old design: each loop computed its connections' requests in turn,
    # so a probe waited for about half the backlog). Counted in parses
    # answered while the probe was in flight, not in seconds, so a slow or
    # busy machine changes both sides alike.
    n_clients, n_probes = 24, 15
    stop = threading.Event()
    lock = threading.Lock()
    done = [0]
    statuses = []

    def flood(k):
        while not stop.is_set():
            st, _, _, _ = srv.request("POST", "/v1/parse", {"text": f"我的快递到哪了，订单号{k:016d}，什么时候能到"})
            with lock:
                done[0] += 1
                statuses.append(st)

    ts = [threading.Thread(target=flood, args=(k,)) for k in range(n_clients)]
    [t.start() for t in ts]
    during, probe_codes = [], []
    try:
        deadline = time.time() + 60
        while done[0] < 2 * n_clients and time.time() < deadline:
            time.sleep(0.02)
        for _ in range(n_probes):
            before = done[0]
            st, j, _, _ = srv.request("GET", "/healthz", token=None)
            during.append(done[0] - before)
            probe_codes.append(st)
            time.sleep(0.05)
        st, _, _, text = srv.request("GET", "/metrics")
        m = dict(line.rsplit(" ", 1) for line in text.decode().splitlines() if line and not line.startswith("#"))
        queued = int(m.get("qiao_queue_length", -1))
    finally:
        stop.set()
        [t.join(timeout=60) for t in ts]
    during.sort()
    check(probe_codes == [200] * n_probes, f"/healthz beside a backlog of parses: all 200 ({sorted(set(probe_codes))})")
    check(during[n_probes // 2] <= 3 and during[-1] < n_clients,
          f"/healthz is not held behind the parses: parses answered while a probe was in flight {during} "
          f"(with {n_clients} outstanding)")
    check(0 <= queued <= n_clients, f"/metrics: qiao_queue_length {queued} (at most {n_clients})")
    check(statuses and statuses.count(200) == len(statuses) and not any(t.is_alive() for t in ts),
          f"the backlog's {len(statuses)} parses: all 200 ({sorted(set(statuses))})")


def test_clients_leaving(srv):
    # Clients that send a whole /v1/parse or /v1/chat and close the socket
    # at once (some with a reset), or leave halfway through the body, by the
    # hundred, beside good requests: the jobs of connections that are gone
    # are computed or dropped without touching freed memory (AddressSanitizer's
    # build), the good requests get their 200s, nothing stays in flight, and
    # the service still stops cleanly. The good requests wait behind every
    # job of a client gone (its answer is computed all the same), hence
    # their long time limit.
    n_leavers, per = 5, 40
    errors, good = [], []
    lock = threading.Lock()

    def leaver(k):
        for i in range(per):
            try:
                leave_mid_request(srv.port, k * per + i)
            except OSError as e:
                with lock:
                    errors.append(repr(e))

    def client(k):
        for i in range(8):
            st, _, _, _ = srv.request("POST", "/v1/parse", {"text": "我的快递到哪了"}, timeout=150)
            st2, _, _, _ = srv.request("POST", "/v1/chat", {"sender_id": f"stays-{k}", "message": "你好"}, timeout=150)
            with lock:
                good.extend([st, st2])

    ts = [threading.Thread(target=leaver, args=(k,)) for k in range(n_leavers)] + \
         [threading.Thread(target=client, args=(k,)) for k in range(3)]
    [t.start() for t in ts]
    [t.join(timeout=160) for t in ts]
    check(not any(t.is_alive() for t in ts) and not errors,
          f"{n_leavers * per} clients leaving mid-request: sent ({errors[:3]})")
    check(good.count(200) == len(good) == 48, f"the good requests beside them: all 200 ({sorted(set(good))})")
    check(srv.proc.poll() is None, "clients leaving: the service is still running")
    deadline, in_flight, queued = time.time() + 60, -1, -1
    while time.time() < deadline:
        st, _, _, text = srv.request("GET", "/metrics")
        m = dict(line.rsplit(" ", 1) for line in text.decode().splitlines() if line and not line.startswith("#"))
        in_flight, queued = int(m.get("qiao_requests_in_flight", -1)), int(m.get("qiao_queue_length", -1))
        if in_flight == 1 and queued == 0:  # the /metrics request itself
            break
        time.sleep(0.1)
    check(in_flight == 1 and queued == 0, f"clients leaving: every request completed (in flight {in_flight}, "
          f"queued {queued}, the /metrics itself counted)")
    st, _, _, _ = srv.request("GET", "/healthz", token=None)
    check(st == 200, "clients leaving: /healthz still answers")


def test_stop_with_backlog(srv):
    # SIGTERM while 24 connections keep the queue full: the requests already
    # queued are computed and answered 200 before the service exits 0 (the
    # connections not yet accepted are refused, which is why the count is a
    # lower bound); no request gets another status.
    n_clients = 24
    lock = threading.Lock()
    answers = []  # (time answered, status)
    sent_term = [None]

    def flood(k):
        while sent_term[0] is None or time.time() < sent_term[0] + 5:
            try:
                st, _, _, _ = srv.request("POST", "/v1/parse", {"text": f"我要退货 {k}"})
            except (OSError, http.client.HTTPException):
                return
            with lock:
                answers.append((time.time(), st))

    ts = [threading.Thread(target=flood, args=(k,)) for k in range(n_clients)]
    [t.start() for t in ts]
    deadline = time.time() + 60
    while len(answers) < 2 * n_clients and time.time() < deadline:
        time.sleep(0.02)
    sent_term[0] = time.time()
    rc = srv.stop()
    [t.join(timeout=60) for t in ts]
    after = [st for when, st in answers if when > sent_term[0]]
    check(rc == 0, f"SIGTERM beside a full queue: exit 0 (got {rc})")
    check(after.count(200) >= n_clients // 2 and all(st == 200 for _, st in answers),
          f"SIGTERM beside a full queue: the queued requests answered 200 ({after.count(200)} after the signal, "
          f"statuses {sorted(set(st for _, st in answers))})")


def test_queue_full():
    # One worker, room for 2 waiting jobs, 24 requests sent at once (the
    # connections opened first, then the bytes written back to back, so
    # they arrive within microseconds of each other while a parse takes a
    # millisecond or more): at least the two the queue has room for are
    # answered (one more when the worker took the first before the rest
    # arrived, which under AddressSanitizer it may not have), the others
    # are refused 503 with Retry-After, counted in qiao_overloaded_total;
    # then the service answers again.
    n = 24
    srv = Server("queue-full", "--workers", "1", "--rate", "0", "--queue", "2")
    try:
        body = json.dumps({"text": "我想退货，订单号1234567890123456"}).encode()
        req = (f"POST /v1/parse HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN_A}\r\nConnection: close\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=60) for _ in range(n)]
        for s in socks:
            s.sendall(req)
        answers = []
        for s in socks:
            out = read_all(s)
            head, _, payload = out.partition(b"\r\n\r\n")
            lines = head.decode("iso-8859-1").split("\r\n")
            status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/1.1 ") else 0
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            try:
                j = json.loads(payload)
            except ValueError:
                j = None
            answers.append((status, headers, j))
        codes = [a[0] for a in answers]
        refused = [a for a in answers if a[0] == 503]
        check(codes.count(200) >= 2 and refused and codes.count(200) + len(refused) == n,
              f"{n} requests at once, --queue 2: some 200, the others 503 ({codes})")
        check(all(h.get("retry-after") == "1" and error_of(j).get("status") == 503 and
                  "overloaded" in error_of(j).get("message", "") for _, h, j in refused),
              "a full queue's 503: Retry-After: 1 and the usual error body")
        st, _, _, text = srv.request("GET", "/metrics")
        m = dict(line.rsplit(" ", 1) for line in text.decode().splitlines() if line and not line.startswith("#"))
        check(int(m.get("qiao_overloaded_total", -1)) == len(refused), "/metrics: qiao_overloaded_total counts them")
        st, j, _, _ = srv.request("POST", "/v1/parse", {"text": "你好"})
        check(st == 200, f"a full queue drained: answered again ({st})")
        rc = srv.stop()
        check(rc == 0, f"queue-full: the service stops cleanly (got {rc})")
    finally:
        srv.stop(signal.SIGKILL)


def test_queue():
    srv = Server("queue", "--workers", "1", "--rate", "0", "--timeout", "60")
    try:
        test_queue_holds_no_loop(srv)
        test_clients_leaving(srv)
        test_stop_with_backlog(srv)
    finally:
        srv.stop(signal.SIGKILL)


def test_embed_and_search():
    # The embedding model and an index of a picture, a recording and a few
    # documents: what comes in as base64 embeds as the file does.
    d = os.path.join(WORK, "search-index")
    os.makedirs(d, exist_ok=True)
    model = os.path.join(ROOT, "models/qiao-base.safetensors")
    jpg = os.path.join(ROOT, "tests/data/image/000000126107.jpg")
    wav = os.path.join(ROOT, "tests/data/audio/fsdd_3_jackson_0.wav")
    index = os.path.join(d, "test.index")
    subprocess.run([QIAO, "search", "index", "--model", model, "--out", index, "--threads", "1",
                    "--texts", os.path.join(ROOT, "tests/data/search/docs.txt"), jpg, wav],
                   check=True, stdout=subprocess.DEVNULL, timeout=120)
    srv = Server("search", "--embed-model", model, "--index", index, "--max-body", str(4 << 20))
    b64 = lambda p: base64.b64encode(open(p, "rb").read()).decode()
    try:
        st, j, _, _ = srv.request("POST", "/v1/embed", {"text": "左上角有一个红色的圆形"})
        norm = math.sqrt(sum(x * x for x in j["embedding"])) if st == 200 else 0
        check(st == 200 and j["dim"] == 1024 and len(j["embedding"]) == 1024 and abs(norm - 1) < 1e-3,
              "embed: a text, 1024 numbers of unit length")
        for kind, path in (("image", jpg), ("audio", wav)):
            st, j, _, _ = srv.request("POST", "/v1/embed", {kind: b64(path)})
            check(st == 200 and len(j["embedding"]) == 1024, f"embed: {kind} from base64")
            st, j, _, _ = srv.request("POST", "/v1/search", {kind: b64(path), "top_k": 3})
            hits = j["hits"] if st == 200 else []
            check(hits and hits[0]["key"] == os.path.abspath(path) and hits[0]["score"] > 0.999 and len(hits) <= 3,
                  f"search: the {kind} sent as base64 finds its own file first ({hits[:1]})")
        st, j, _, _ = srv.request("POST", "/v1/search", {"text": "hello", "top_k": 2})
        check(st == 200 and len(j["hits"]) == 2, "search: a text query")
        for what, body, field in (("bad base64", {"image": "@@@"}, "image"),
                                  ("a picture that is not one", {"image": base64.b64encode(b"not a picture" * 10).decode()},
                                   "image"),
                                  ("audio that is not", {"audio": base64.b64encode(b"RIFF" + b"\0" * 60).decode()}, "audio"),
                                  ("two inputs", {"text": "x", "image": b64(jpg)}, None),
                                  ("no input", {}, None)):
            st, j, _, _ = srv.request("POST", "/v1/embed", body)
            e = error_of(j)
            check(st == 400 and (field is None or e.get("field") == field), f"embed: {what}: 400 ({e.get('message')})")
        st, j, _, _ = srv.request("POST", "/v1/search", {"text": "x", "top_k": 0})
        check(st == 400 and error_of(j).get("field") == "top_k", "search: top_k 0: 400")
    finally:
        srv.stop()


def test_two_processes_on_redis():
    # Two services behind a (pretend) load balancer share conversations
    # through one Redis: a conversation starts on one, goes on on the other,
    # is handed to a human there and listed by the first.
    d = os.path.join(WORK, "redis")
    os.makedirs(d, exist_ok=True)
    sock = os.path.join(d, "redis.sock")
    if os.path.exists(sock):
        os.remove(sock)
    redis = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly",
                              "no", "--dir", d], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    started.append(redis)
    a = b = None
    try:
        deadline = time.time() + 20
        while not os.path.exists(sock) and time.time() < deadline:
            time.sleep(0.05)
        a = Server("redis-a", "--redis", sock, "--redis-prefix", "shop:")
        b = Server("redis-b", "--redis", sock, "--redis-prefix", "shop:")
        c = "lb-customer"
        st, j, _, _ = a.request("POST", "/v1/chat", {"sender_id": c, "message": "我要退货"})
        check(st == 200 and j["action"].startswith("form:return"), "redis: the form starts on service A")
        st, j, _, _ = b.request("POST", "/v1/chat", {"sender_id": c, "message": "1234567890123456"})
        check(st == 200 and j["slots"].get("order_id") == "1234567890123456" and j["action"].startswith("form:return"),
              f"redis: service B goes on with A's form ({j and j.get('action')})")
        st, j, _, _ = b.request("POST", "/v1/chat", {"sender_id": c, "message": "转人工"})
        check(st == 200 and j["paused"], "redis: handed to a human on B")
        st, j, _, _ = a.request("GET", "/v1/conversations?paused=1")
        check(st == 200 and [x["sender_id"] for x in j["conversations"]] == [c], "redis: A's console lists it")
        st, j, _, _ = a.request("GET", f"/v1/conversations/{c}")
        check(st == 200 and j["paused"] is True and j["slots"]["order_id"]["value"] == "1234567890123456",
              "redis: A reads B's state (paused, the order id)")
        for srv in (a, b):
            rc = srv.stop()
            check(rc == 0, f"redis: {srv.dir[-7:]} stops cleanly")
        a = b = None
    finally:
        for srv in (a, b):
            if srv:
                srv.stop(signal.SIGKILL)
        redis.terminate()
        redis.wait(timeout=10)


def test_threads_only():
    srv = Server("threads")
    errors = []

    def client(k):
        for i in range(3):
            for method, path, body in (("POST", "/v1/parse", {"text": "我的快递到哪了"}),
                                       ("POST", "/v1/chat", {"sender_id": "shared", "message": f"你好 {k}"}),
                                       ("POST", "/v1/chat", {"sender_id": f"own-{k}", "message": "转人工"}),
                                       ("GET", "/v1/conversations?paused=1", None), ("GET", "/metrics", None),
                                       ("GET", "/healthz", None), ("GET", "/", None),
                                       ("POST", f"/v1/conversations/own-{k}/reply", {"text": "您好"})):
                st, _, _, _ = srv.request(method, path, body)
                if st != 200:
                    errors.append((method, path, st))

    def leaver():
        # Connections gone while their jobs wait or run: the workers resume
        # them while their loops close them.
        for i in range(12):
            leave_mid_request(srv.port, i)

    try:
        ts = [threading.Thread(target=client, args=(k,)) for k in range(4)] + [threading.Thread(target=leaver)]
        [t.start() for t in ts]
        time.sleep(0.5)
        srv.proc.send_signal(signal.SIGHUP)
        [t.join(timeout=200) for t in ts]
        check(not errors and not any(t.is_alive() for t in ts), f"4 clients on every route at once ({errors[:3]})")
        st, _, _, _ = srv.request("POST", "/v1/parse", {"text": "hi"})
        check(st == 200, "after the SIGHUP the tokens still work")
        busy = [threading.Thread(target=srv.request, args=("POST", "/v1/chat", {"sender_id": f"late-{k}",
                                                                               "message": "你好"}))
                for k in range(4)]
        [t.start() for t in busy]
        time.sleep(0.1)
        rc = srv.stop()
        [t.join(timeout=60) for t in busy]
        check(rc == 0, f"SIGTERM with requests in flight: exit 0 (got {rc})")
    finally:
        srv.stop(signal.SIGKILL)


def main():
    os.makedirs(WORK, exist_ok=True)

    def out_of_time():
        print("FAIL the test ran out of time (240 s)", flush=True)
        for p in started:
            if p.poll() is None:
                p.kill()
        os._exit(3)

    alarm = threading.Timer(240, out_of_time)
    alarm.daemon = True
    alarm.start()
    if "--threads-only" in sys.argv[4:]:
        test_threads_only()
        if failures:
            sys.exit(1)
        print("all checks passed")
        return
    srv = Server("main")
    try:
        test_routes(srv)
        test_conversation(srv)
        test_tokens(srv)
        test_bad_requests(srv)
        test_slow_client(srv)
        test_one_conversation_many_clients(srv)
        test_metrics(srv)
        test_reload(srv)
        check(srv.proc.poll() is None, "the service is still running")
        test_graceful_stop(srv)
    finally:
        srv.stop(signal.SIGKILL)
    test_rate_limit()
    test_auth_fail_limit()
    test_queue()
    test_queue_full()
    test_embed_and_search()
    test_two_processes_on_redis()
    if failures:
        print(f"{len(failures)} checks failed; the server's log: {srv.log.name}")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
