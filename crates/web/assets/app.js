// hlbot dashboard: live updates over SSE (/events) for the Workers, Tasks and task pages.
(function () {
  "use strict";
  var page = document.body.getAttribute("data-page") || "";
  var live = document.getElementById("live");
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function badge(s) { return '<span class="st st-' + esc(String(s).toLowerCase()) + '">' + esc(s) + "</span>"; }
  function fmtTime(t) { return t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : "—"; }
  function fmtSecs(s) { return s == null ? "—" : (s < 1 ? Math.round(s * 1000) + " ms" : s.toFixed(2) + " s"); }
  function filterOk(t) {
    var f = document.getElementById("filters");
    if (!f) return true;
    var st = f.elements.state.value, nm = f.elements.name.value, wk = f.elements.worker.value;
    return (!st || t.state.toLowerCase() === st.toLowerCase()) &&
      (!nm || (t.name || "").indexOf(nm) >= 0) && (!wk || (t.hostname || "").indexOf(wk) >= 0);
  }
  function taskRow(t) {
    return '<td><a href="/task/' + esc(t.uuid) + '">' + esc(t.uuid) + "</a></td><td>" + esc(t.name) +
      '</td><td class="state">' + badge(t.state) + "</td><td>" + esc(t.hostname) + "</td><td>" +
      esc(t.args) + "</td><td>" + fmtTime(t.received || t.sent) + '</td><td class="num">' + fmtSecs(t.runtime) + "</td>";
  }
  function onTask(t) {
    if (page === "/tasks") {
      var body = document.querySelector("#tasks tbody");
      if (!body) return;
      var row = document.getElementById("task-" + t.uuid);
      if (!filterOk(t)) { if (row) row.remove(); return; }
      if (!row) {
        row = document.createElement("tr");
        row.id = "task-" + t.uuid;
        body.insertBefore(row, body.firstChild);
        while (body.children.length > 200) body.removeChild(body.lastChild);
      }
      row.setAttribute("data-state", t.state);
      row.innerHTML = taskRow(t);
    } else if (page === "/task") {
      var el = document.getElementById("task-state");
      if (el && el.getAttribute("data-uuid") === t.uuid) {
        // Rendered before the dashboard had seen it: reload for the details and actions.
        if (el.getAttribute("data-state") === "UNKNOWN") { location.reload(); return; }
        el.innerHTML = badge(t.state);
        el.setAttribute("data-state", t.state);
        var r = document.getElementById("task-result");
        if (r && t.result != null) r.textContent = t.result;
        var tb = document.getElementById("task-traceback");
        if (tb && t.traceback) tb.textContent = t.traceback;
      }
    }
  }
  function onWorker(w) {
    if (page !== "/workers") return;
    var row = document.getElementById("worker-" + w.hostname);
    if (!row) { location.reload(); return; }
    var set = function (cls, html) { var c = row.querySelector("." + cls); if (c) c.innerHTML = html; };
    set("status", badge(w.online ? "online" : "offline"));
    set("active", esc(w.active)); set("processed", esc(w.processed)); set("failed", esc(w.failed));
    set("load", esc((w.loadavg || []).map(function (x) { return x.toFixed(2); }).join(" ")));
    set("beat", "0 s");
    row.setAttribute("data-beat", w.last_heartbeat);
  }
  if (window.EventSource && (page === "/tasks" || page === "/task" || page === "/workers")) {
    var follow = document.getElementById("task-state");
    var es = new EventSource(page === "/task" && follow
      ? "/events?task=" + encodeURIComponent(follow.getAttribute("data-uuid")) : "/events");
    es.onopen = function () { if (live) live.className = "on"; };
    es.onerror = function () { if (live) live.className = ""; };
    es.onmessage = function (m) {
      var v; try { v = JSON.parse(m.data); } catch (e) { return; }
      if (v.kind === "task") onTask(v); else if (v.kind === "worker") onWorker(v);
    };
  }
  if (page === "/workers") {
    setInterval(function () {
      document.querySelectorAll("tr[data-beat]").forEach(function (r) {
        var c = r.querySelector(".beat");
        var b = parseFloat(r.getAttribute("data-beat"));
        if (c && b) c.textContent = Math.max(0, Math.round(Date.now() / 1000 - b)) + " s";
      });
    }, 1000);
  }
})();
