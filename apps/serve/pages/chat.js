/* The customer's chat page (served at /). Talks to POST /v1/chat, and polls
 * GET /v1/conversations/{id} for what a human agent (or the bot, when the
 * agent gives the conversation back) says between the customer's turns. */
"use strict";

(function () {
  var STRINGS = {
    zh: {
      pageTitle: "小桥客服", title: "小桥客服", subtitle: "在线为您服务",
      newConv: "新对话", otherLang: "English", settings: "设置",
      tokenLabel: "访问令牌", tokenPlaceholder: "粘贴访问令牌", tokenSave: "保存", tokenClear: "清除",
      tokenHint: "令牌只保存在本标签页中，关闭后即清除。",
      tokenSet: "已设置令牌。", tokenNone: "尚未设置令牌。",
      welcomeTitle: "您好，我是小桥",
      welcomeText: "可以帮您查订单、查物流、退换货、改地址、开发票，也可以为您转人工客服。",
      inputPlaceholder: "输入消息，按 Enter 发送", send: "发送",
      conversationId: "会话编号",
      you: "我", bot: "小桥", agent: "客服 {name}", agentNoName: "人工客服",
      pausedWaiting: "正在为您转接人工客服，您的消息会转给客服同事，请稍候……",
      pausedAgent: "客服 {name} 已接入，正在处理您的会话",
      pausedJoined: "人工客服已接入",
      resumedNotice: "人工客服已结束服务，小桥回来了",
      newConvNotice: "已开始新的对话",
      notSent: "未发送", forwarded: "已转给人工客服", typing: "小桥正在输入",
      errNetwork: "网络连接好像断了，请检查网络后再试。",
      errToken: "需要有效的访问令牌才能继续，请在上方“设置”中输入令牌。",
      errSlowDown: "您发送得有点快，请稍等片刻再发。",
      errTooLong: "这条消息太长了，请精简一些再发送。",
      errBadRequest: "这条消息没能发送，请修改后再试。",
      errNotFound: "没有找到这个会话。",
      errServer: "服务暂时不可用，请稍后再试。",
      errOther: "出了点问题（{status}），请稍后再试。"
    },
    en: {
      pageTitle: "qiao support", title: "qiao support", subtitle: "We're here to help",
      newConv: "New chat", otherLang: "中文", settings: "Settings",
      tokenLabel: "Access token", tokenPlaceholder: "Paste your access token", tokenSave: "Save",
      tokenClear: "Clear",
      tokenHint: "The token is kept in this tab only and forgotten when it closes.",
      tokenSet: "A token is set.", tokenNone: "No token yet.",
      welcomeTitle: "Hi, I'm qiao",
      welcomeText: "I can check orders and deliveries, handle returns and exchanges, change an address, issue invoices, or get you a human agent.",
      inputPlaceholder: "Type a message, Enter to send", send: "Send",
      conversationId: "Conversation",
      you: "You", bot: "qiao", agent: "Agent {name}", agentNoName: "Human agent",
      pausedWaiting: "Connecting you to a human agent. They will see your messages; please hold on...",
      pausedAgent: "{name} from our team has joined and is handling your conversation",
      pausedJoined: "A human agent has joined",
      resumedNotice: "The agent has finished; qiao is back",
      newConvNotice: "A new conversation has started",
      notSent: "Not sent", forwarded: "passed to the agent", typing: "qiao is typing",
      errNetwork: "The network seems to be down. Please check your connection and try again.",
      errToken: "A valid access token is needed. Please enter it under Settings above.",
      errSlowDown: "You're sending messages a little fast. Please wait a moment.",
      errTooLong: "That message is too long. Please shorten it and send again.",
      errBadRequest: "That message couldn't be sent. Please change it and try again.",
      errNotFound: "This conversation wasn't found.",
      errServer: "The service is unavailable right now. Please try again later.",
      errOther: "Something went wrong ({status}). Please try again later."
    }
  };

  var ID_KEY = "qiao.sender_id";
  var POLL_PAUSED_MS = 1000, POLL_IDLE_MS = 3000;

  var list, input, errorBox, banner, bannerText, settings;
  var senderId = "";
  var shown = 0;            // the highest transcript line number on the page
  var paused = false;
  var agentName = "";       // the last agent who wrote, while paused
  var known = false;        // the server has this conversation
  var sending = 0;          // turns in flight
  var sendSeq = 0;          // bumped at every send: a poll begun before it is stale
  var pollTimer = null, polling = false;
  var needToken = false;

  function newId() {
    var bytes = new Uint8Array(10);
    crypto.getRandomValues(bytes);
    var hex = "";
    for (var i = 0; i < bytes.length; i++) hex += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    return "web-" + hex;
  }

  function loadId() {
    var id = null;
    try { id = localStorage.getItem(ID_KEY); } catch (e) { /* storage off */ }
    if (!id || !/^[A-Za-z0-9_.:-]{1,64}$/.test(id)) {
      id = newId();
      try { localStorage.setItem(ID_KEY, id); } catch (e) { /* storage off */ }
    }
    return id;
  }

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function scrollDown(force) {
    if (force || nearBottom()) list.scrollTop = list.scrollHeight;
  }

  function whoLabel(from, agent) {
    if (from === "user") return Qiao.t("you");
    if (from === "agent") return agent ? Qiao.t("agent", { name: agent }) : Qiao.t("agentNoName");
    return Qiao.t("bot");
  }

  /* One message: from is "user", "bot" or "agent". */
  function addMessage(from, text, opts) {
    opts = opts || {};
    var stick = nearBottom() || from === "user";
    var welcome = document.getElementById("welcome");
    if (welcome) welcome.remove();
    var row = Qiao.el("div", "msg from-" + from);
    row.dataset.from = from;
    if (opts.agent) row.dataset.agent = opts.agent;
    if (opts.n) row.dataset.n = String(opts.n);
    if (from !== "user") {
      var avatar = Qiao.el("div", "avatar", from === "agent" ? (opts.agent || "客").slice(0, 1) : "桥");
      avatar.setAttribute("aria-hidden", "true");
      row.appendChild(avatar);
    }
    var body = Qiao.el("div", "body");
    body.appendChild(Qiao.el("div", "who", whoLabel(from, opts.agent)));
    body.appendChild(Qiao.el("div", "bubble", text));
    var meta = Qiao.el("div", "meta", Qiao.formatTime(opts.time || Date.now() / 1000));
    body.appendChild(meta);
    row.appendChild(body);
    list.appendChild(row);
    scrollDown(stick);
    return row;
  }

  function addNotice(text) {
    var stick = nearBottom();
    list.appendChild(Qiao.el("div", "notice", text));
    scrollDown(stick);
  }

  function markFailed(row) {
    row.classList.add("failed");
    row.querySelector(".meta").textContent = Qiao.t("notSent");
  }

  var typingRow = null;
  function showTyping(on) {
    if (on && !typingRow) {
      typingRow = Qiao.el("div", "msg from-bot typing");
      var avatar = Qiao.el("div", "avatar", "桥");
      avatar.setAttribute("aria-hidden", "true");
      typingRow.appendChild(avatar);
      var bubble = Qiao.el("div", "bubble");
      bubble.setAttribute("aria-label", Qiao.t("typing"));
      for (var i = 0; i < 3; i++) bubble.appendChild(Qiao.el("span", "typing-dot"));
      var body = Qiao.el("div", "body");
      body.appendChild(bubble);
      typingRow.appendChild(body);
      list.appendChild(typingRow);
      scrollDown(true);
    } else if (!on && typingRow) {
      typingRow.remove();
      typingRow = null;
    }
  }

  function renderBanner() {
    banner.hidden = !paused;
    document.body.classList.toggle("paused", paused);
    if (paused) {
      bannerText.textContent = agentName ? Qiao.t("pausedAgent", { name: agentName })
                                         : Qiao.t("pausedWaiting");
    }
  }

  function setPaused(p) {
    var was = paused;
    paused = !!p;
    if (!paused) agentName = "";
    renderBanner();
    if (was !== paused) schedulePoll(paused ? POLL_PAUSED_MS : POLL_IDLE_MS);
  }

  /* kind "poll": an error a later successful poll clears. */
  function showError(err, kind) {
    errorBox.textContent = Qiao.describeError(err);
    errorBox.dataset.kind = kind || "";
    errorBox.hidden = false;
    if (err.status === 401 || err.status === 403) {
      needToken = true;
      settings.show(true);
    }
  }

  function clearError() {
    errorBox.hidden = true;
    errorBox.textContent = "";
    errorBox.dataset.kind = "";
  }

  /* A transcript line from GET /v1/conversations/{id}. */
  function renderLine(line) {
    shown = line.n;
    var from = line.from === "user" || line.from === "agent" ? line.from : "bot";
    addMessage(from, typeof line.text === "string" ? line.text : "",
               { time: line.time, agent: from === "agent" ? line.agent : null, n: line.n });
  }

  /* The conversation's state: the lines not yet shown, and paused or not.
   * When a poll finds the agent gave the conversation back, a notice goes
   * before the bot's first new line. */
  function applyState(state, byPoll) {
    known = true;
    var lines = Array.isArray(state.transcript) ? state.transcript.filter(function (l) {
      return l && typeof l.n === "number" && l.n > shown;
    }) : [];
    lines.sort(function (a, b) { return a.n - b.n; });
    var resumed = byPoll && paused && !state.paused;
    if (state.paused) {
      // The banner names the agent who last wrote since the bot last spoke.
      var all = Array.isArray(state.transcript) ? state.transcript : [];
      for (var i = all.length - 1; i >= 0; i--) {
        if (all[i].from === "agent" && all[i].agent) { agentName = all[i].agent; break; }
        if (all[i].from === "bot") break;
      }
    }
    lines.forEach(function (line) {
      if (resumed && line.from === "bot") {
        addNotice(Qiao.t("resumedNotice"));
        resumed = false;
      }
      renderLine(line);
    });
    if (resumed) addNotice(Qiao.t("resumedNotice"));
    if (typeof state.said === "number" && state.said > shown && !Array.isArray(state.transcript)) {
      shown = state.said;
    }
    setPaused(!!state.paused);
  }

  function loadConversation() {
    // Without a token too: the server says whether it wants one (401).
    return Qiao.api("GET", "/v1/conversations/" + encodeURIComponent(senderId)).then(function (state) {
      clearError();
      needToken = false;
      if (shown === 0) {
        // Drawn afresh: an unsent message's bubble goes (its text waits in the input).
        while (list.firstChild) list.removeChild(list.firstChild);
      }
      applyState(state, false);
      schedulePoll(paused ? POLL_PAUSED_MS : POLL_IDLE_MS);
    }, function (err) {
      if (err.status === 404) {
        known = false;
        clearError();
        needToken = false;
        return;
      }
      showError(err);
    });
  }

  function schedulePoll(ms) {
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = setTimeout(poll, ms);
  }

  function poll() {
    pollTimer = null;
    if (polling || sending || !known || needToken || (document.hidden && !paused)) {
      schedulePoll(paused ? POLL_PAUSED_MS : POLL_IDLE_MS);
      return;
    }
    polling = true;
    var seq = sendSeq, id = senderId;
    Qiao.api("GET", "/v1/conversations/" + encodeURIComponent(id)).then(function (state) {
      polling = false;
      if (seq !== sendSeq || id !== senderId || sending) return;   // a turn began meanwhile
      if (!errorBox.hidden && errorBox.dataset.kind === "poll") clearError();
      applyState(state, true);
    }, function (err) {
      polling = false;
      if (id !== senderId) return;
      if (err.status === 401 || err.status === 403) showError(err);
      else if (err.status === 0) showError(err, "poll");
    }).then(function () {
      schedulePoll(paused ? POLL_PAUSED_MS : POLL_IDLE_MS);
    });
  }

  function send() {
    var text = input.value.replace(/\s+$/, "");
    if (!text.trim()) return;
    input.value = "";
    autosize();
    var row = addMessage("user", text);
    sending++;
    sendSeq++;
    if (!paused) showTyping(true);
    var id = senderId;
    Qiao.api("POST", "/v1/chat", { sender_id: id, message: text }).then(function (res) {
      sending--;
      showTyping(false);
      if (id !== senderId) return;
      clearError();
      needToken = false;
      known = true;
      // The turn's lines end at res.said: the customer's, then the bot's.
      var msgs = Array.isArray(res.messages) ? res.messages : [];
      var first = typeof res.said === "number" ? res.said - msgs.length : 0;
      if (first > 0) row.dataset.n = String(first);
      msgs.forEach(function (m, i) {
        addMessage("bot", m && typeof m.text === "string" ? m.text : "",
                   { n: first > 0 ? first + 1 + i : 0 });
      });
      if (typeof res.said === "number" && res.said > shown) shown = res.said;
      if (res.paused && msgs.length === 0) {
        // Queued for the person who has the conversation.
        row.querySelector(".meta").textContent = Qiao.formatTime(Date.now() / 1000) + " · " + Qiao.t("forwarded");
      }
      setPaused(!!res.paused);
    }, function (err) {
      sending--;
      showTyping(false);
      markFailed(row);
      if (!input.value) { input.value = text; autosize(); }
      showError(err);
    });
  }

  function autosize() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 160) + "px";
    input.style.overflowY = input.scrollHeight > 160 ? "auto" : "hidden";
  }

  function startNew() {
    senderId = newId();
    try { localStorage.setItem(ID_KEY, senderId); } catch (e) { /* storage off */ }
    document.getElementById("conv-id").textContent = senderId;
    shown = 0;
    known = false;
    paused = false;
    agentName = "";
    sendSeq++;
    while (list.firstChild) list.removeChild(list.firstChild);
    var welcome = Qiao.el("div", "welcome");
    welcome.id = "welcome";
    welcome.appendChild(Qiao.el("p", "welcome-title", Qiao.t("welcomeTitle")));
    welcome.appendChild(Qiao.el("p", null, Qiao.t("welcomeText")));
    welcome.firstChild.setAttribute("data-i18n", "welcomeTitle");
    welcome.lastChild.setAttribute("data-i18n", "welcomeText");
    list.appendChild(welcome);
    renderBanner();
    clearError();
    input.focus();
  }

  function relabel() {
    var rows = list.querySelectorAll(".msg[data-from]");
    for (var i = 0; i < rows.length; i++) {
      var who = rows[i].querySelector(".who");
      if (who) who.textContent = whoLabel(rows[i].dataset.from, rows[i].dataset.agent);
      if (rows[i].classList.contains("failed")) rows[i].querySelector(".meta").textContent = Qiao.t("notSent");
    }
    renderBanner();
    settings.refresh();
  }

  function main() {
    Qiao.init(STRINGS);
    list = document.getElementById("messages");
    input = document.getElementById("input");
    errorBox = document.getElementById("error");
    banner = document.getElementById("paused-banner");
    bannerText = document.getElementById("paused-text");
    settings = Qiao.setupSettings(function () {
      needToken = false;
      clearError();
      if (shown === 0) loadConversation();
      schedulePoll(200);
    });
    senderId = loadId();
    document.getElementById("conv-id").textContent = senderId;

    document.getElementById("composer").addEventListener("submit", function (e) {
      e.preventDefault();
      send();
    });
    Qiao.sendOnEnter(input, send);
    input.addEventListener("input", autosize);
    document.getElementById("new-conv").addEventListener("click", startNew);
    document.getElementById("lang-switch").addEventListener("click", function () {
      Qiao.setLanguage(Qiao.lang() === "zh" ? "en" : "zh");
      relabel();
    });
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) schedulePoll(100);
    });

    loadConversation();
    input.focus();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
