/* The agent console (served at /agent): the conversations a human agent has
 * (GET /v1/conversations?paused=1), one's transcript and queued messages,
 * replying (POST .../reply), and giving it back to the bot (POST .../resume). */
"use strict";

(function () {
  var STRINGS = {
    zh: {
      pageTitle: "小桥客服工作台", title: "客服工作台", subtitle: "转人工的会话",
      agentName: "客服名", agentNamePlaceholder: "例如 小王", otherLang: "English", settings: "设置",
      tokenLabel: "访问令牌", tokenPlaceholder: "粘贴访问令牌", tokenSave: "保存", tokenClear: "清除",
      tokenHint: "令牌只保存在本标签页中，关闭后即清除。",
      tokenSet: "已设置令牌。", tokenNone: "尚未设置令牌。",
      waiting: "待处理", refresh: "刷新", noConversations: "暂时没有等待人工处理的会话。",
      takeoverLabel: "按会话编号接管", takeoverPlaceholder: "会话编号", takeover: "接管",
      lastUpdated: "更新于", pickOne: "从左侧选择一个会话。",
      handoff: "接管会话", resume: "交回机器人",
      queueTitle: "等待回复的消息", replyPlaceholder: "输入回复，按 Enter 发送，Shift+Enter 换行",
      send: "发送",
      statusPaused: "人工处理中", statusBot: "机器人处理中",
      metaLine: "语言 {language} · {turns} 轮 · 更新于 {updated}",
      queuedCount: "{n} 条待回复", noText: "（无内容）",
      from_user: "顾客", from_bot: "机器人", from_agent: "客服 {name}", from_agent_anon: "客服",
      queuedTag: "待回复", formChip: "进行中：{form}",
      needName: "请先在右上角填写客服名。",
      replied: "回复已发送。", resumed: "已交回机器人。", handedOff: "已接管会话 {id}。",
      gone: "这个会话已不存在。",
      errNetwork: "网络连接好像断了，请检查网络后再试。",
      errToken: "需要有效的访问令牌，请在“设置”中输入。",
      errSlowDown: "操作太频繁，请稍等片刻再试。",
      errTooLong: "回复太长了，请精简一些。",
      errBadRequest: "请求有误，请检查后再试。",
      errNotFound: "没有找到这个会话。",
      errServer: "服务暂时不可用，请稍后再试。",
      errOther: "出了点问题（{status}），请稍后再试。"
    },
    en: {
      pageTitle: "qiao agent console", title: "Agent console", subtitle: "Conversations handed to a person",
      agentName: "Your name", agentNamePlaceholder: "e.g. Alex", otherLang: "中文", settings: "Settings",
      tokenLabel: "Access token", tokenPlaceholder: "Paste your access token", tokenSave: "Save",
      tokenClear: "Clear",
      tokenHint: "The token is kept in this tab only and forgotten when it closes.",
      tokenSet: "A token is set.", tokenNone: "No token yet.",
      waiting: "Waiting", refresh: "Refresh", noConversations: "No conversation is waiting for a person.",
      takeoverLabel: "Take over by conversation id", takeoverPlaceholder: "Conversation id",
      takeover: "Take over",
      lastUpdated: "Updated", pickOne: "Pick a conversation on the left.",
      handoff: "Take over", resume: "Give back to the bot",
      queueTitle: "Waiting for a reply", replyPlaceholder: "Type a reply, Enter to send, Shift+Enter for a new line",
      send: "Send",
      statusPaused: "With an agent", statusBot: "With the bot",
      metaLine: "Language {language} · {turns} turns · updated {updated}",
      queuedCount: "{n} waiting", noText: "(empty)",
      from_user: "Customer", from_bot: "Bot", from_agent: "Agent {name}", from_agent_anon: "Agent",
      queuedTag: "waiting", formChip: "form: {form}",
      needName: "Please fill in your name at the top first.",
      replied: "Reply sent.", resumed: "Given back to the bot.", handedOff: "You have taken over {id}.",
      gone: "This conversation no longer exists.",
      errNetwork: "The network seems to be down. Please check your connection and try again.",
      errToken: "A valid access token is needed. Please enter it under Settings.",
      errSlowDown: "Too many requests. Please wait a moment.",
      errTooLong: "That reply is too long. Please shorten it.",
      errBadRequest: "The request was refused. Please check it and try again.",
      errNotFound: "This conversation wasn't found.",
      errServer: "The service is unavailable right now. Please try again later.",
      errOther: "Something went wrong ({status}). Please try again later."
    }
  };

  var NAME_KEY = "qiao.agent_name";
  var REFRESH_MS = 2000;

  var errorBox, settings, listEl, agentInput, replyInput;
  var conversations = [];
  var selected = null;        // the sender_id shown on the right
  var detail = null;          // its last state
  var detailKey = "";         // what the transcript was drawn from
  var needToken = false;
  var listBusy = false, detailBusy = false, actionBusy = false;
  var toastTimer = null;

  function $(id) { return document.getElementById(id); }

  /* kind "poll": a network error the next good refresh clears. */
  function showError(err, kind) {
    errorBox.textContent = typeof err === "string" ? err : Qiao.describeError(err);
    errorBox.dataset.kind = kind || "";
    errorBox.hidden = false;
    if (err && (err.status === 401 || err.status === 403)) {
      needToken = true;
      settings.show(true);
    }
  }

  function clearError() {
    errorBox.hidden = true;
    errorBox.textContent = "";
  }

  function toast(text) {
    var t = $("toast");
    if (!t) {
      t = Qiao.el("div", "toast");
      t.id = "toast";
      t.setAttribute("role", "status");
      document.body.appendChild(t);
    }
    t.textContent = text;
    t.classList.add("on");
    if (toastTimer) clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { t.classList.remove("on"); }, 2500);
  }

  function path(id, tail) {
    return "/v1/conversations/" + encodeURIComponent(id) + (tail || "");
  }

  /* ---- the list ---- */

  function refreshList() {
    if (listBusy || needToken) return Promise.resolve();
    listBusy = true;
    return Qiao.api("GET", "/v1/conversations?paused=1").then(function (res) {
      listBusy = false;
      if (!errorBox.hidden && errorBox.dataset.kind === "poll") clearError();
      conversations = Array.isArray(res.conversations) ? res.conversations : [];
      renderList();
      $("list-updated").textContent = Qiao.formatTime(Date.now() / 1000);
    }, function (err) {
      listBusy = false;
      showError(err, err.status === 0 ? "poll" : "");
    });
  }

  function renderList() {
    while (listEl.firstChild) listEl.removeChild(listEl.firstChild);
    conversations.forEach(function (c) {
      var li = Qiao.el("li");
      var b = Qiao.el("button", "conv" + (c.sender_id === selected ? " selected" : ""));
      b.type = "button";
      b.dataset.id = c.sender_id;
      var top = Qiao.el("div", "conv-top");
      top.appendChild(Qiao.el("span", "conv-id mono", c.sender_id));
      top.appendChild(Qiao.el("span", "conv-time", Qiao.formatTime(c.updated)));
      b.appendChild(top);
      var last = typeof c.last === "string" && c.last ? c.last : Qiao.t("noText");
      b.appendChild(Qiao.el("div", "conv-last", last));
      var tags = Qiao.el("div", "conv-tags");
      if (c.language) tags.appendChild(Qiao.el("span", "tag", c.language === "en" ? "EN" : "中文"));
      var q = Array.isArray(c.queue) ? c.queue.length : 0;
      if (q > 0) tags.appendChild(Qiao.el("span", "tag badge", Qiao.t("queuedCount", { n: q })));
      b.appendChild(tags);
      b.addEventListener("click", function () { select(c.sender_id); });
      li.appendChild(b);
      listEl.appendChild(li);
    });
    $("conv-count").textContent = String(conversations.length);
    $("conv-empty").hidden = conversations.length > 0;
  }

  /* ---- one conversation ---- */

  function select(id) {
    selected = id;
    detail = null;
    detailKey = "";
    var buttons = listEl.querySelectorAll(".conv");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].classList.toggle("selected", buttons[i].dataset.id === id);
    }
    $("detail-empty").hidden = true;
    $("detail-body").hidden = false;
    $("detail-id").textContent = id;
    $("detail-meta").textContent = "";
    var tr = $("transcript");
    while (tr.firstChild) tr.removeChild(tr.firstChild);
    loadDetail().then(function () { replyInput.focus(); });
  }

  function loadDetail() {
    if (!selected || needToken) return Promise.resolve();
    if (detailBusy) return Promise.resolve();
    detailBusy = true;
    var id = selected;
    return Qiao.api("GET", path(id)).then(function (state) {
      detailBusy = false;
      if (id !== selected) return;
      detail = state;
      renderDetail(state);
    }, function (err) {
      detailBusy = false;
      if (id !== selected) return;
      if (err.status === 404) {
        showError(Qiao.t("gone"));
        selected = null;
        $("detail-body").hidden = true;
        $("detail-empty").hidden = false;
        return;
      }
      showError(err);
    });
  }

  /* The customer lines still queued for the agent: from the end of the
   * transcript back to the bot's last line, those whose text the queue
   * holds. */
  function queuedLines(lines, queue) {
    var left = {};
    queue.forEach(function (q) { left[q] = (left[q] || 0) + 1; });
    var marked = {};
    for (var i = lines.length - 1; i >= 0; i--) {
      var l = lines[i];
      if (l.from === "bot") break;
      if (l.from === "user" && left[l.text] > 0) {
        left[l.text]--;
        marked[l.n] = true;
      }
    }
    return marked;
  }

  function who(line) {
    if (line.from === "user") return Qiao.t("from_user");
    if (line.from === "agent") {
      return line.agent ? Qiao.t("from_agent", { name: line.agent }) : Qiao.t("from_agent_anon");
    }
    return Qiao.t("from_bot");
  }

  /* What the bot has gathered: the form under way and its slots, as chips
   * (a slot is {"value": ...} in the state, or a bare value). */
  function renderSlots(state) {
    var box = $("slots");
    while (box.firstChild) box.removeChild(box.firstChild);
    var slots = state.slots && typeof state.slots === "object" ? state.slots : {};
    var names = Object.keys(slots);
    var form = typeof state.form === "string" && state.form ? state.form : "";
    if (form) box.appendChild(Qiao.el("span", "chip form", Qiao.t("formChip", { form: form })));
    names.forEach(function (name) {
      var v = slots[name];
      if (v && typeof v === "object" && !Array.isArray(v)) v = v.value;
      if (v === null || v === undefined) return;
      var chip = Qiao.el("span", "chip");
      chip.appendChild(Qiao.el("span", "chip-name", name));
      chip.appendChild(Qiao.el("span", "chip-value", typeof v === "string" ? v : JSON.stringify(v)));
      box.appendChild(chip);
    });
    box.hidden = !box.firstChild;
  }

  function renderDetail(state) {
    var paused = !!state.paused;
    var queue = Array.isArray(state.queue) ? state.queue : [];
    var lines = Array.isArray(state.transcript) ? state.transcript.slice() : [];
    lines.sort(function (a, b) { return a.n - b.n; });

    $("detail-id").textContent = selected;
    var lastTime = lines.length ? lines[lines.length - 1].time : state.updated;
    $("detail-meta").textContent = Qiao.t("metaLine", {
      language: state.language === "en" ? "EN" : "中文",
      turns: typeof state.turns === "number" ? state.turns : "-",
      updated: Qiao.formatTime(typeof state.updated === "number" ? state.updated : lastTime) || "-"
    });
    var pill = $("detail-status");
    pill.textContent = paused ? Qiao.t("statusPaused") : Qiao.t("statusBot");
    pill.className = "status-pill " + (paused ? "paused" : "bot");
    $("resume").hidden = !paused;
    $("handoff").hidden = paused;
    $("reply-input").disabled = !paused;
    $("reply-send").disabled = !paused;

    var key = JSON.stringify([Qiao.lang(), paused, queue, lines.length ? lines[lines.length - 1].n : 0,
                              lines.length, state.slots || null, state.form || null]);
    if (key === detailKey) return;
    detailKey = key;

    renderSlots(state);

    var qbox = $("queue-box"), qlist = $("queue-list");
    while (qlist.firstChild) qlist.removeChild(qlist.firstChild);
    queue.forEach(function (text) { qlist.appendChild(Qiao.el("li", "queued-text", text)); });
    qbox.hidden = queue.length === 0;

    var marked = queuedLines(lines, queue);
    var tr = $("transcript");
    var stick = tr.scrollHeight - tr.scrollTop - tr.clientHeight < 80 || !tr.firstChild;
    while (tr.firstChild) tr.removeChild(tr.firstChild);
    lines.forEach(function (line) {
      var from = line.from === "user" || line.from === "agent" ? line.from : "bot";
      var li = Qiao.el("li", "line from-" + from + (marked[line.n] ? " queued" : ""));
      li.dataset.n = String(line.n);
      var head = Qiao.el("div", "line-head");
      head.appendChild(Qiao.el("span", "who", who(line)));
      if (marked[line.n]) head.appendChild(Qiao.el("span", "tag badge", Qiao.t("queuedTag")));
      head.appendChild(Qiao.el("span", "time", Qiao.formatTime(line.time)));
      li.appendChild(head);
      li.appendChild(Qiao.el("div", "text", typeof line.text === "string" ? line.text : ""));
      tr.appendChild(li);
    });
    if (stick) tr.scrollTop = tr.scrollHeight;
  }

  /* ---- actions ---- */

  function agentName() {
    return agentInput.value.trim();
  }

  function reply() {
    var text = replyInput.value.replace(/\s+$/, "");
    if (!selected || !text.trim() || actionBusy) return;
    var name = agentName();
    if (!name) {
      showError(Qiao.t("needName"));
      agentInput.focus();
      return;
    }
    actionBusy = true;
    var id = selected;
    Qiao.api("POST", path(id, "/reply"), { text: text, agent: name }).then(function () {
      actionBusy = false;
      clearError();
      if (id === selected) replyInput.value = "";
      toast(Qiao.t("replied"));
      return Promise.all([loadDetail(), refreshList()]);
    }, function (err) {
      actionBusy = false;
      showError(err);
    });
  }

  function resume() {
    if (!selected || actionBusy) return;
    actionBusy = true;
    Qiao.api("POST", path(selected, "/resume")).then(function () {
      actionBusy = false;
      clearError();
      toast(Qiao.t("resumed"));
      return Promise.all([loadDetail(), refreshList()]);
    }, function (err) {
      actionBusy = false;
      showError(err);
    });
  }

  function handoff(id) {
    if (!id || actionBusy) return;
    actionBusy = true;
    Qiao.api("POST", path(id, "/handoff")).then(function () {
      actionBusy = false;
      clearError();
      toast(Qiao.t("handedOff", { id: id }));
      return refreshList().then(function () { select(id); });
    }, function (err) {
      actionBusy = false;
      showError(err);
    });
  }

  function tick() {
    refreshList();
    loadDetail();
  }

  function main() {
    Qiao.init(STRINGS);
    errorBox = $("error");
    listEl = $("conv-list");
    agentInput = $("agent-name");
    replyInput = $("reply-input");
    settings = Qiao.setupSettings(function () {
      needToken = false;
      clearError();
      tick();
    });

    try { agentInput.value = localStorage.getItem(NAME_KEY) || ""; } catch (e) { /* storage off */ }
    agentInput.addEventListener("change", function () {
      try { localStorage.setItem(NAME_KEY, agentName()); } catch (e) { /* storage off */ }
    });

    $("refresh").addEventListener("click", function () {
      needToken = false;
      tick();
    });
    $("reply-form").addEventListener("submit", function (e) { e.preventDefault(); reply(); });
    Qiao.sendOnEnter(replyInput, reply);
    $("resume").addEventListener("click", resume);
    $("handoff").addEventListener("click", function () { handoff(selected); });
    $("takeover-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var id = $("takeover-id").value.trim();
      if (id) { $("takeover-id").value = ""; handoff(id); }
    });
    $("lang-switch").addEventListener("click", function () {
      Qiao.setLanguage(Qiao.lang() === "zh" ? "en" : "zh");
      settings.refresh();
      renderList();
      if (detail) renderDetail(detail);
    });

    tick();
    setInterval(function () {
      if (!document.hidden) tick();
    }, REFRESH_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
})();
