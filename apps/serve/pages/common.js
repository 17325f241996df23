/* Shared by the chat page (index.html) and the agent console (agent.html):
 * the UI language, the access token, and calls to the /v1 API.
 * Plain JavaScript, no build step. Text from the server or the user is only
 * ever set with textContent (never innerHTML), so it renders as text. */
"use strict";

var Qiao = (function () {
  var TOKEN_KEY = "qiao.token";   // sessionStorage: gone when the tab closes
  var LANG_KEY = "qiao.lang";     // localStorage: the reader's choice

  var strings = { zh: {}, en: {} };
  var lang = "zh";

  function pickLanguage() {
    var saved = null;
    try { saved = localStorage.getItem(LANG_KEY); } catch (e) { /* storage off */ }
    if (saved === "zh" || saved === "en") return saved;
    var nav = (navigator.languages && navigator.languages[0]) || navigator.language || "";
    return /^zh\b/i.test(nav) ? "zh" : "en";
  }

  /* t("key", {name: "x"}): the string in the current language, {name}
   * replaced by the value (as text: the caller sets it with textContent). */
  function t(key, vars) {
    var s = strings[lang][key];
    if (s === undefined) s = strings.zh[key];
    if (s === undefined) return key;
    if (vars) {
      s = s.replace(/\{(\w+)\}/g, function (m, k) {
        return Object.prototype.hasOwnProperty.call(vars, k) ? String(vars[k]) : m;
      });
    }
    return s;
  }

  /* Every element with data-i18n="key" gets t(key) as its text;
   * data-i18n-placeholder, data-i18n-title and data-i18n-aria do the same
   * for those attributes. */
  function applyStrings(root) {
    root = root || document;
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    var els = root.querySelectorAll("[data-i18n]");
    for (var i = 0; i < els.length; i++) els[i].textContent = t(els[i].getAttribute("data-i18n"));
    var attrs = [["data-i18n-placeholder", "placeholder"], ["data-i18n-title", "title"],
                 ["data-i18n-aria", "aria-label"]];
    attrs.forEach(function (pair) {
      var list = root.querySelectorAll("[" + pair[0] + "]");
      for (var j = 0; j < list.length; j++) list[j].setAttribute(pair[1], t(list[j].getAttribute(pair[0])));
    });
    if (strings[lang].pageTitle) document.title = t("pageTitle");
  }

  function setLanguage(l) {
    lang = l === "en" ? "en" : "zh";
    try { localStorage.setItem(LANG_KEY, lang); } catch (e) { /* storage off */ }
    applyStrings();
  }

  function init(pageStrings) {
    strings = pageStrings;
    lang = pickLanguage();
    takeTokenFromFragment();
    applyStrings();
  }

  /* The token: #token=... in the address (then removed from it, so it is
   * not left in the history or a copied link), else what was typed into the
   * settings field; kept in sessionStorage. */
  function takeTokenFromFragment() {
    var hash = location.hash.replace(/^#/, "");
    if (!hash) return;
    var params = new URLSearchParams(hash);
    var tok = params.get("token");
    if (tok === null) return;
    setToken(tok);
    params.delete("token");
    var rest = params.toString();
    try {
      history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    } catch (e) { /* a file: URL, say */ }
  }

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }

  function setToken(tok) {
    tok = (tok || "").trim();
    try {
      if (tok) sessionStorage.setItem(TOKEN_KEY, tok);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage off */ }
  }

  /* An error from the API: status (0 when the network failed), the server's
   * message and field when it sent them. */
  function ApiError(status, message, field) {
    this.status = status;
    this.message = message || "";
    this.field = field || null;
  }

  /* api("POST", "/v1/chat", {...}) resolves to the parsed JSON answer or
   * rejects with an ApiError. */
  function api(method, path, body) {
    var headers = { "Accept": "application/json" };
    var tok = token();
    if (tok) headers["Authorization"] = "Bearer " + tok;
    var init = { method: method, headers: headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json; charset=utf-8";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        if (text) {
          try { data = JSON.parse(text); } catch (e) { data = null; }
        }
        if (res.ok) {
          if (data === null) throw new ApiError(res.status, "not JSON", null);
          return data;
        }
        var err = data && data.error ? data.error : {};
        throw new ApiError(res.status, err.message, err.field);
      });
    }, function () {
      throw new ApiError(0, "network", null);
    });
  }

  /* A polite sentence for an ApiError, in the UI's language. */
  function describeError(err) {
    var s = err && typeof err.status === "number" ? err.status : -1;
    if (s === 0) return t("errNetwork");
    if (s === 401 || s === 403) return t("errToken");
    if (s === 429) return t("errSlowDown");
    if (s === 413) return t("errTooLong");
    if (s === 400) return t("errBadRequest");
    if (s === 404) return t("errNotFound");
    if (s >= 500) return t("errServer");
    return t("errOther", { status: s });
  }

  /* HH:MM today, else MM-DD HH:MM, from unix seconds. */
  function formatTime(unix) {
    if (typeof unix !== "number" || !isFinite(unix) || unix <= 0) return "";
    var d = new Date(unix * 1000), now = new Date();
    function two(n) { return (n < 10 ? "0" : "") + n; }
    var hm = two(d.getHours()) + ":" + two(d.getMinutes());
    if (d.toDateString() === now.toDateString()) return hm;
    return two(d.getMonth() + 1) + "-" + two(d.getDate()) + " " + hm;
  }

  /* el("div", "class names", "text"): a new element, its text set as text. */
  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  /* Enter sends, Shift+Enter is a new line, and Enter that confirms an input
   * method's candidate (Chinese pinyin) does not send. */
  function sendOnEnter(textarea, send) {
    textarea.addEventListener("keydown", function (e) {
      if (e.key !== "Enter" || e.shiftKey || e.isComposing || e.keyCode === 229) return;
      e.preventDefault();
      send();
    });
  }

  /* The settings panel (token field) shared by both pages. ids: settings,
   * settings-toggle, token-input, token-save, token-clear, token-state. */
  function setupSettings(onSaved) {
    var panel = document.getElementById("settings");
    var toggle = document.getElementById("settings-toggle");
    var input = document.getElementById("token-input");
    var state = document.getElementById("token-state");
    function refreshState() {
      state.textContent = token() ? t("tokenSet") : t("tokenNone");
      state.className = "token-state " + (token() ? "ok" : "missing");
    }
    function show(needed) {
      panel.hidden = false;
      panel.classList.toggle("needed", !!needed);
      toggle.setAttribute("aria-expanded", "true");
      refreshState();
      if (needed) input.focus();
    }
    function hide() {
      panel.hidden = true;
      panel.classList.remove("needed");
      toggle.setAttribute("aria-expanded", "false");
    }
    toggle.addEventListener("click", function () {
      if (panel.hidden) show(false); else hide();
    });
    document.getElementById("token-form").addEventListener("submit", function (e) {
      e.preventDefault();
      if (!input.value.trim()) { input.focus(); return; }
      setToken(input.value);
      input.value = "";
      refreshState();
      hide();
      if (onSaved) onSaved();
    });
    document.getElementById("token-clear").addEventListener("click", function () {
      setToken("");
      input.value = "";
      refreshState();
    });
    refreshState();
    return { show: show, hide: hide, refresh: refreshState };
  }

  return {
    init: init, t: t, applyStrings: applyStrings, setLanguage: setLanguage,
    lang: function () { return lang; },
    token: token, setToken: setToken, api: api, ApiError: ApiError,
    describeError: describeError, formatTime: formatTime, el: el,
    sendOnEnter: sendOnEnter, setupSettings: setupSettings
  };
})();
