#!/usr/bin/env python3
"""Drives the pages `qiao serve` serves (apps/serve/pages) in a headless
Chromium, against the real server and the sample shop's bot:

  tests/browser/test_pages.py QIAO_BIN SCRATCH_DIR

A customer greets the bot, asks for a human, writes once more (queued); an
agent finds the conversation in the console, sees the queued message,
replies, and the reply shows on the chat page; the agent gives the
conversation back and the bot's resume message shows; a <script> message
renders as text; a page without a token asks for one after a 401.
Screenshots of each step go to SCRATCH_DIR (chat-1.png, agent-1.png, ...).

Needs Debian's chromium, chromium-driver and python3-selenium
(scripts/install-deps.sh). Exits 0 when every step passed.
"""
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time

HARD_TIMEOUT_S = 150      # the whole test, server start included
PORT_WAIT_S = 60          # the server writes --port-file once listening
REPLY_WAIT_S = 10         # an agent's reply must reach the chat page by polling
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BOT = os.path.join(ROOT, "apps", "chatbot", "ecommerce.yml")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

AGENT = "小王"
AGENT_REPLY = "您好，我是客服小王"
QUEUED = "我的快递三天没动了，帮我催一下"
XSS = "<script>window.pwned=1</script>"


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout("the whole test ran past %d s" % HARD_TIMEOUT_S)


def step(name):
    print("== " + name, flush=True)


SERVER = None             # the qiao serve process, watched while waiting


def server_gone():
    """Why the server is not running, or None while it is."""
    if SERVER is None or SERVER.poll() is None:
        return None
    return ("qiao serve exited (status %d) in the middle of the test, before the test stopped it"
            % SERVER.returncode)


def wait_for(what, fn, timeout=10.0, every=0.1):
    """fn() until it returns something true; its value, or AssertionError."""
    end = time.monotonic() + timeout
    last_exc = None
    while True:
        gone = server_gone()
        if gone:
            raise AssertionError("%s, while waiting for %s (serve.log below)" % (gone, what))
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # a stale element between two renders, say
            last_exc = e
        if time.monotonic() >= end:
            extra = " (last error: %r)" % (last_exc,) if last_exc else ""
            raise AssertionError("timed out after %.0f s waiting for %s%s" % (timeout, what, extra))
        time.sleep(every)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("   ok: " + what, flush=True)


def start_server(qiao, work, token):
    tokens = os.path.join(work, "tokens")
    with open(os.open(tokens, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(secrets.token_hex(16) + "\n" + token + "\n")   # one per line: the second is ours
    port_file = os.path.join(work, "port")
    log = open(os.path.join(work, "serve.log"), "wb")
    cmd = [qiao, "serve", "--bot", BOT, "--tokens", tokens,
           "--store", os.path.join(work, "conv.sqlite"), "--orders", os.path.join(work, "orders.sqlite"),
           "--listen", "127.0.0.1:0", "--port-file", port_file]
    print("   $ " + " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    end = time.monotonic() + PORT_WAIT_S
    while True:
        if proc.poll() is not None:
            raise AssertionError("qiao serve exited with %d before listening" % proc.returncode)
        try:
            with open(port_file) as f:
                m = re.search(r"(\d+)\s*$", f.read())
            if m and 0 < int(m.group(1)) < 65536:
                return proc, int(m.group(1))
        except FileNotFoundError:
            pass
        if time.monotonic() >= end:
            raise AssertionError("no port in %s after %d s" % (port_file, PORT_WAIT_S))
        time.sleep(0.1)


def stop_server(proc):
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


def make_driver(work):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--no-first-run", "--no-default-browser-check", "--disable-extensions",
              "--disable-background-networking", "--disable-sync", "--disable-translate",
              "--lang=zh-CN", "--window-size=1100,820", "--force-device-scale-factor=1",
              "--user-data-dir=" + os.path.join(work, "chromium-profile")):
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_path=os.path.join(work, "chromedriver.log"))
    d = webdriver.Chrome(service=service, options=opts)
    d.set_page_load_timeout(30)
    d.set_script_timeout(10)
    return d


def run(qiao, work):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    token = secrets.token_urlsafe(24)
    server = driver = None
    shots = []
    try:
        step("start qiao serve")
        server, port = start_server(qiao, work, token)
        global SERVER
        SERVER = server
        base = "http://127.0.0.1:%d" % port
        print("   listening on " + base, flush=True)

        step("start headless chromium")
        driver = make_driver(work)

        def shot(name):
            p = os.path.join(work, name)
            driver.save_screenshot(p)
            shots.append(p)
            print("   screenshot " + p, flush=True)

        def js(script, *args):
            return driver.execute_script(script, *args)

        def q(sel):
            return driver.find_element(By.CSS_SELECTOR, sel)

        def qa(sel):
            return driver.find_elements(By.CSS_SELECTOR, sel)

        def texts(sel):
            return [e.text for e in qa(sel)]

        def bot_rows():
            return qa("#messages .msg.from-bot:not(.typing)")

        def say(text):
            box = q("#input")
            box.send_keys(text)
            box.send_keys(Keys.ENTER)

        def last_user_settled():
            rows = qa("#messages .msg.from-user")
            if not rows:
                return None
            r = rows[-1]
            if "failed" in r.get_attribute("class"):
                raise AssertionError("the message was not sent: " + q("#error").text)
            return r.get_attribute("data-n")

        # -- the chat page --
        step("chat: open / with #token=...")
        driver.get(base + "/#token=" + token)
        wait_for("the chat input", lambda: q("#input").is_displayed())
        check(js("return location.hash") == "", "the token left the address bar")
        check(js("return sessionStorage.getItem('qiao.token')") == token, "the token is in sessionStorage")
        sender = js("return localStorage.getItem('qiao.sender_id')")
        check(bool(sender), "a conversation id is kept in localStorage: %s" % sender)
        check(q("#conv-id").text == sender, "the page shows the conversation id")
        chat_tab = driver.current_window_handle

        step("chat: 你好 gets a bot reply")
        say("你好")
        wait_for("a bot reply", lambda: bot_rows() and bot_rows()[-1].find_element(By.CSS_SELECTOR, ".bubble").text)
        reply = bot_rows()[-1].find_element(By.CSS_SELECTOR, ".bubble").text
        check(texts("#messages .msg.from-user .bubble") == ["你好"], "the customer's message is shown")
        check(len(reply) > 0, "the bot answered: " + reply)
        check(q("#paused-banner").is_displayed() is False, "no human agent yet")
        shot("chat-1.png")

        step("chat: 转人工 hands the conversation to a person")
        bots_before = len(bot_rows())
        say("转人工")
        wait_for("the paused notice", lambda: q("#paused-banner").is_displayed())
        check(len(bot_rows()) > bots_before, "the bot said it hands off: " +
              bot_rows()[-1].find_element(By.CSS_SELECTOR, ".bubble").text)
        check(q("#paused-text").text != "", "paused notice: " + q("#paused-text").text)
        shot("chat-2.png")

        step("chat: a message while paused is queued")
        bots_before = len(bot_rows())
        say(QUEUED)
        wait_for("the queued message to be accepted",
                 lambda: last_user_settled() and texts("#messages .msg.from-user .bubble")[-1] == QUEUED)
        time.sleep(0.5)
        check(len(bot_rows()) == bots_before, "the bot stays silent while a person has the conversation")
        check(q("#paused-banner").is_displayed(), "still paused")
        shot("chat-3.png")

        # -- the agent console --
        step("agent: open /agent in a second tab and find the conversation")
        driver.switch_to.new_window("tab")
        agent_tab = driver.current_window_handle
        driver.get(base + "/agent#token=" + token)
        name = wait_for("the agent name field", lambda: q("#agent-name"))
        name.clear()
        name.send_keys(AGENT)
        item = wait_for("the conversation in the list",
                        lambda: [e for e in qa("#conv-list .conv") if e.get_attribute("data-id") == sender])[0]
        check(QUEUED in item.text, "the list shows the customer's last message")
        item.click()
        wait_for("the transcript", lambda: len(qa("#transcript .line")) >= 5)
        queued = wait_for("the queued message highlighted",
                          lambda: [e for e in qa("#transcript .line.queued") if QUEUED in e.text])
        check(len(queued) == 1, "the queued message is highlighted in the transcript")
        check(QUEUED in texts("#queue-list li"), "the queued message is listed as waiting")
        check("你好" in q("#transcript").text, "the transcript has the whole conversation")
        shot("agent-1.png")

        step("agent: reply as 小王")
        box = q("#reply-input")
        box.send_keys(AGENT_REPLY)
        box.send_keys(Keys.ENTER)
        wait_for("the reply in the transcript",
                 lambda: [e for e in qa("#transcript .line.from-agent") if AGENT_REPLY in e.text])
        line = [e for e in qa("#transcript .line.from-agent") if AGENT_REPLY in e.text][0]
        check(AGENT in line.find_element(By.CSS_SELECTOR, ".who").text, "the reply is signed " + AGENT)
        check(q("#reply-input").get_attribute("value") == "", "the reply box is cleared")
        shot("agent-2.png")

        step("chat: the agent's reply arrives by polling (within %d s)" % REPLY_WAIT_S)
        driver.switch_to.window(chat_tab)
        row = wait_for("the agent's reply on the chat page",
                       lambda: [r for r in qa("#messages .msg.from-agent") if AGENT_REPLY in r.text],
                       timeout=REPLY_WAIT_S)[0]
        check(row.find_element(By.CSS_SELECTOR, ".bubble").text == AGENT_REPLY, "the agent's words, as sent")
        check(AGENT in row.find_element(By.CSS_SELECTOR, ".who").text, "with the agent's name")
        def bg(r):
            return r.find_element(By.CSS_SELECTOR, ".bubble").value_of_css_property("background-color")
        check(bg(row) != bg(bot_rows()[0]), "the agent's bubble has its own colour (%s)" % bg(row))
        wait_for("the banner to name the agent", lambda: AGENT in q("#paused-text").text, timeout=3)
        check(True, "paused notice: " + q("#paused-text").text)
        agent_n = int(row.get_attribute("data-n"))
        shot("chat-4.png")

        step("agent: give the conversation back to the bot")
        driver.switch_to.window(agent_tab)
        q("#resume").click()
        wait_for("the console to show the bot has it",
                 lambda: "bot" in q("#detail-status").get_attribute("class"))
        wait_for("the conversation to leave the list",
                 lambda: sender not in [e.get_attribute("data-id") for e in qa("#conv-list .conv")])
        check(True, "the conversation left the waiting list")
        shot("agent-3.png")

        step("chat: the bot's resume message shows")
        driver.switch_to.window(chat_tab)
        wait_for("the paused notice to go", lambda: not q("#paused-banner").is_displayed(), timeout=REPLY_WAIT_S)
        back = wait_for("a bot message after the agent's",
                        lambda: [r for r in bot_rows() if int(r.get_attribute("data-n") or 0) > agent_n],
                        timeout=REPLY_WAIT_S)
        text = back[0].find_element(By.CSS_SELECTOR, ".bubble").text
        check("回来" in text, "the bot is back: " + text.replace("\n", " "))
        shot("chat-5.png")

        step("chat: a <script> message renders as text")
        bots_before = len(bot_rows())
        say(XSS)
        wait_for("the message accepted", lambda: last_user_settled() and
                 texts("#messages .msg.from-user .bubble")[-1] == XSS)
        check(js("return document.querySelectorAll('#messages script').length") == 0,
              "no script element in the message list")
        check(js("return typeof window.pwned") == "undefined", "window.pwned is undefined")
        bubble_html = js("var b = document.querySelectorAll('#messages .msg.from-user .bubble');"
                         "return b[b.length - 1].innerHTML")
        check(bubble_html == "&lt;script&gt;window.pwned=1&lt;/script&gt;", "the bubble holds escaped text")
        wait_for("the bot's answer to it", lambda: len(bot_rows()) > bots_before)
        shot("chat-6.png")
        driver.switch_to.window(agent_tab)
        wait_for("the console's transcript to show it",
                 lambda: [e for e in qa("#transcript .line.from-user .text") if e.text == XSS], timeout=6)
        check(js("return typeof window.pwned") == "undefined", "the console ran no script either")
        shot("agent-4.png")

        step("chat: without a token the page asks for one after a 401")
        driver.switch_to.window(chat_tab)
        js("sessionStorage.clear()")
        driver.get(base + "/")
        wait_for("the token prompt", lambda: q("#settings").is_displayed() and q("#token-input").is_displayed())
        check("needed" in q("#settings").get_attribute("class"), "the prompt is marked as needed")
        err = wait_for("the error line", lambda: q("#error").is_displayed() and q("#error").text)
        check(True, "the page says: " + err)
        check(js("return document.activeElement && document.activeElement.id") == "token-input",
              "the token field has the focus")
        say("还在吗")
        wait_for("the unsent message marked",
                 lambda: "failed" in qa("#messages .msg.from-user")[-1].get_attribute("class"))
        check(q("#input").get_attribute("value") == "还在吗", "the unsent text is back in the input")
        shot("chat-7.png")

        step("chat: the typed token restores the conversation")
        q("#token-input").send_keys(token)
        q("#token-input").send_keys(Keys.ENTER)
        wait_for("the transcript restored",
                 lambda: [r for r in qa("#messages .msg.from-agent") if AGENT_REPLY in r.text], timeout=5)
        check(not q("#error").is_displayed(), "the error is gone")
        check(not qa("#messages .msg.failed"), "the unsent message is gone (its text waits in the input)")
        check(texts("#messages .msg.from-user .bubble")[-1] == XSS, "the script message is still text")
        shot("chat-8.png")

        step("English")
        q("#lang-switch").click()
        wait_for("the English chat page", lambda: q("#send").text == "Send")
        check(js("return document.documentElement.lang") == "en", "<html lang> follows")
        check(q("#lang-switch").text == "中文", "the switch offers Chinese")
        check(qa("#messages .msg.from-agent .who")[-1].text == "Agent " + AGENT, "labels follow")
        shot("chat-en.png")
        driver.switch_to.window(agent_tab)
        q("#lang-switch").click()
        wait_for("the English console", lambda: q("#reply-send").text == "Send")
        check(js("return localStorage.getItem('qiao.lang')") == "en", "the choice is kept")
        shot("agent-en.png")
        driver.switch_to.window(chat_tab)

        step("small screens")
        driver.set_window_size(400, 800)
        time.sleep(0.3)
        shot("chat-mobile.png")
        driver.switch_to.window(agent_tab)
        time.sleep(0.3)
        shot("agent-mobile.png")
        width = js("return document.documentElement.scrollWidth")
        check(width <= 400, "no sideways scrolling at 400 px (%d)" % width)

        step("browser console: no script errors")
        bad = []
        for h in (chat_tab, agent_tab):
            driver.switch_to.window(h)
            for e in driver.get_log("browser"):
                # the 401s and the first 404 this test provokes are logged as failed loads
                if e.get("level") == "SEVERE" and "Failed to load resource" not in e.get("message", ""):
                    bad.append(e["message"])
        check(not bad, "no errors logged" if not bad else "errors: %r" % bad)
        print("PASS: every step", flush=True)
        return 0
    except Exception:
        gone = server_gone()
        if gone:
            print("   " + gone + " (a signal from elsewhere, when serve.log says SIGTERM)")
        if driver is not None:
            try:
                p = os.path.join(work, "failure.png")
                driver.save_screenshot(p)
                print("   screenshot at failure: " + p)
                for e in driver.get_log("browser"):
                    print("   browser: %s %s" % (e.get("level"), e.get("message")))
            except Exception:
                pass
        log = os.path.join(work, "serve.log")
        if os.path.exists(log):
            with open(log, "rb") as f:
                tail = f.read()[-3000:].decode("utf-8", "replace")
            print("---- serve.log (tail)\n" + tail + "\n----")
        raise
    finally:
        if driver is not None:
            try:
                driver.quit()
            except Exception:
                pass
        stop_server(server)


def main():
    if len(sys.argv) != 3:
        print("usage: test_pages.py QIAO_BIN SCRATCH_DIR", file=sys.stderr)
        return 2
    qiao, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not os.access(tool, os.X_OK):
            print("%s is missing: scripts/install-deps.sh installs chromium and chromium-driver" % tool,
                  file=sys.stderr)
            return 1
    try:
        import selenium  # noqa: F401
    except ImportError:
        print("python3-selenium is missing (scripts/install-deps.sh)", file=sys.stderr)
        return 1
    # A fresh scratch folder: no port file or store from a run before.
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(HARD_TIMEOUT_S)
    try:
        return run(qiao, work)
    except (AssertionError, Timeout) as e:
        print("FAIL: %s" % e, flush=True)
        return 1
    finally:
        signal.alarm(0)


if __name__ == "__main__":
    sys.exit(main())
