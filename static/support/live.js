/* Live updates for the support pages: one WebSocket per page, reconnecting with backoff.
   The page gives the last sequence it shows (data-after); every (re)connect sends it back, so the server
   sends exactly what was missed. Rows are built with textContent only (no HTML from the server). */
(function () {
  "use strict";

  function wsUrl(path, query) {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + path + (query ? "?" + query : "");
  }

  function cell(text, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text === null || text === undefined ? "" : String(text);
    return td;
  }

  function live(root, onMessage) {
    var status = root.querySelector(".live-text") || document.querySelector(".live-text");
    var dot = root.querySelector(".live-dot") || document.querySelector(".live-dot");
    var after = root.getAttribute("data-after") || "";
    var delay = 500;
    var stopped = false;
    var socket = null;

    function say(text, state) {
      if (status) status.textContent = text;
      if (dot) dot.setAttribute("data-state", state);
      document.body.setAttribute("data-live", state);
    }

    function connect() {
      var query = root.getAttribute("data-query") || "";
      var params = new URLSearchParams(query);
      if (after !== "") params.set("after", after);
      socket = new WebSocket(wsUrl(root.getAttribute("data-ws-path"), params.toString()));
      socket.onopen = function () { delay = 500; say("Live: connected — new entries appear as they happen.", "open"); };
      socket.onmessage = function (message) {
        var data = JSON.parse(message.data);
        if (data.type === "error") {
          say(data.message, "error");
          if (data.code === 4401 || data.code === 4403 || data.code === 4400 || data.code === 4404) stopped = true;
          return;
        }
        if (data.last !== undefined && data.last !== null) after = String(data.last);
        if (data.type === "hello" && data.after !== undefined) after = String(data.after);
        onMessage(data);
      };
      socket.onclose = function (event) {
        if (stopped || event.code === 4401 || event.code === 4403 || event.code === 4400 || event.code === 4404) {
          stopped = true;
          return;
        }
        say("Live: connection lost — reconnecting…", "reconnecting");
        window.setTimeout(connect, delay);
        delay = Math.min(delay * 2, 15000);
      };
    }
    connect();
    window.addEventListener("beforeunload", function () { stopped = true; if (socket) socket.close(); });
  }

  function auditTail(root) {
    var tbody = document.querySelector("#audit-table tbody");
    var count = 0;
    live(root, function (data) {
      if (data.type !== "events" || !tbody) return;
      var empty = tbody.querySelector("tr.empty");
      if (empty) empty.remove();
      data.events.forEach(function (e) {
        var tr = document.createElement("tr");
        tr.className = "outcome-" + e.outcome + " live-new";
        var first = document.createElement("td");
        var link = document.createElement("a");
        link.href = e.url;
        link.textContent = String(e.sequence);
        first.appendChild(link);
        tr.appendChild(first);
        tr.appendChild(cell(e.created_at));
        tr.appendChild(cell(e.principal_id || "—"));
        tr.appendChild(cell(e.identity_source || "—"));
        tr.appendChild(cell(e.method));
        tr.appendChild(cell(e.tool || "—"));
        var outcome = cell("");
        var badge = document.createElement("span");
        badge.className = "outcome";
        badge.textContent = e.outcome;
        outcome.appendChild(badge);
        tr.appendChild(outcome);
        tr.appendChild(cell(e.error_code));
        tr.appendChild(cell(e.latency_ms, "num"));
        tr.setAttribute("data-sequence", e.sequence);
        tbody.insertBefore(tr, tbody.firstChild);
      });
      count += data.events.length;
      var text = root.querySelector(".live-text");
      if (text) text.textContent = "Live: " + count + " new event" + (count === 1 ? "" : "s") + " since this page loaded.";
    });
  }

  function timeline(root) {
    var events = root.querySelector("#timeline tbody");
    var jobs = root.querySelector("#jobs-table tbody");
    var withJobs = root.getAttribute("data-with-jobs") === "1";
    live(root, function (data) {
      if (data.type !== "timeline") return;
      var state = document.getElementById("object-state");
      if (state && data.state) {
        state.textContent = data.state;
        state.className = "state state-" + data.state;
      }
      if (!/^(queued|running|retrying|active)$/.test(data.state || "")) {
        var form = root.querySelector(".cancel-form");
        if (form) form.remove();
      }
      (data.events || []).forEach(function (e) {
        var tr = document.createElement("tr");
        tr.className = "live-new";
        tr.appendChild(cell(e.seq));
        tr.appendChild(cell(e.created_at));
        tr.appendChild(cell(e.kind, "kind"));
        if (withJobs) tr.appendChild(cell(e.job_id ? e.job_id.slice(0, 8) + "…" : ""));
        var details = Object.keys(e.payload || {}).map(function (k) {
          var v = e.payload[k];
          return k + " " + (typeof v === "string" ? v : JSON.stringify(v));
        }).join("  ");
        tr.appendChild(cell(details));
        events.appendChild(tr);
      });
      if (jobs) {
        (data.jobs || []).forEach(function (j) {
          var row = jobs.querySelector('tr[data-job-id="' + j.id + '"]');
          if (!row) {
            var empty = jobs.querySelector("tr.empty");
            if (empty) empty.remove();
            row = document.createElement("tr");
            row.setAttribute("data-job-id", j.id);
            var first = document.createElement("td");
            var link = document.createElement("a");
            link.href = j.url;
            link.textContent = j.id.slice(0, 8) + "…";
            first.appendChild(link);
            row.appendChild(first);
            row.appendChild(cell(j.tool));
            var st = cell("");
            var badge = document.createElement("span");
            badge.setAttribute("data-field", "state");
            st.appendChild(badge);
            row.appendChild(st);
            var at = cell(""); at.setAttribute("data-field", "attempts"); row.appendChild(at);
            var up = cell(""); up.setAttribute("data-field", "updated_at"); row.appendChild(up);
            jobs.appendChild(row);
          }
          var s = row.querySelector('[data-field="state"]');
          s.textContent = j.state;
          s.className = "state state-" + j.state;
          row.querySelector('[data-field="attempts"]').textContent = String(j.attempts);
          row.querySelector('[data-field="updated_at"]').textContent = j.updated_at;
        });
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var audit = document.querySelector("[data-live-audit]");
    if (audit) auditTail(audit);
    var tl = document.querySelector("[data-live-timeline]");
    if (tl) timeline(tl);
  });
})();
