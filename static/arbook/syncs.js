/* arbook — live progress of sync runs on /syncs/ (no framework, no CDN).
   While a run is queued or running, poll the page's JSON status endpoint every 2 s and update the
   runs table in place (new runs appear at the top of the first page). Text only: no innerHTML. */
(function () {
  "use strict";
  var table = document.getElementById("sync-runs");
  if (!table || !window.fetch) { return; }
  var url = table.getAttribute("data-status-url");
  var firstPage = table.getAttribute("data-first-page") === "1";
  var live = document.getElementById("sync-live");
  var tbody = table.tBodies[0];
  var FIELDS = ["started_at", "credential", "trigger", "status", "pages", "fetched", "created", "updated",
                "unchanged", "lookups", "missing", "seconds", "error"];
  var delay = 2000, idlePolls = 0, timer = null;

  function setText(cell, field, run) {
    if (field === "status") {
      var badge = cell.querySelector(".badge") || cell.appendChild(document.createElement("span"));
      // Label and colour come from the server's status registry (arbook.status), like the page's.
      badge.className = "badge badge--" + (run.status_colour || "grey");
      badge.textContent = run.status_label;
    } else if (field === "seconds") {
      cell.textContent = run.finished_at ? run.seconds.toFixed(1) + " s" : run.seconds.toFixed(0) + " s…";
    } else if (field === "trigger") {
      cell.textContent = run.trigger + (run.full ? " (full)" : "");
    } else if (field === "credential") {
      if (!cell.textContent) { cell.textContent = run.credential_label || ("#" + run.credential); }
    } else if (field === "error") {
      cell.textContent = run.error ? run.error.slice(0, 200) : "";
    } else {
      cell.textContent = run[field] === null || run[field] === undefined ? "" : String(run[field]);
    }
  }

  function rowFor(run) {
    var row = tbody.querySelector('tr[data-run-id="' + run.id + '"]');
    if (row || !firstPage) { return row; }
    var empty = tbody.querySelector("tr.empty-row");
    if (empty) { empty.parentNode.removeChild(empty); }
    row = document.createElement("tr");
    row.setAttribute("data-run-id", run.id);
    FIELDS.forEach(function (f) {
      var td = document.createElement("td");
      td.setAttribute("data-field", f);
      if (["pages", "fetched", "created", "updated", "unchanged", "lookups", "missing", "seconds"].indexOf(f) >= 0) { td.className = "num"; }
      row.appendChild(td);
    });
    // The credential's label as the page shows it in the accounts table (no extra request).
    var state = document.querySelector('[data-credential-state="' + run.credential + '"]');
    if (state && state.parentNode) { run.credential_label = state.parentNode.cells[0].textContent.trim(); }
    tbody.insertBefore(row, tbody.firstChild);
    return row;
  }

  function apply(data) {
    data.runs.slice().reverse().forEach(function (run) {
      var row = rowFor(run);
      if (!row) { return; }
      FIELDS.forEach(function (f) {
        var cell = row.querySelector('[data-field="' + f + '"]');
        if (cell) { setText(cell, f, run); }
      });
    });
    var cells = document.querySelectorAll("[data-credential-state]");
    Array.prototype.forEach.call(cells, function (cell) {
      var id = parseInt(cell.getAttribute("data-credential-state"), 10);
      cell.textContent = data.running.indexOf(id) >= 0 ? "running" : (data.queued.indexOf(id) >= 0 ? "queued" : "—");
    });
    if (live) { live.textContent = data.active ? "Updating every 2 seconds…" : "Up to date."; }
  }

  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(function (data) {
        apply(data);
        idlePolls = data.active ? 0 : idlePolls + 1;
        if (idlePolls < 2) { timer = window.setTimeout(poll, delay); }  // one more read after the end
      })
      .catch(function () {
        if (live) { live.textContent = "Could not refresh the progress; reload the page to retry."; }
      });
  }

  if (table.getAttribute("data-active") === "1") { timer = window.setTimeout(poll, 500); }
  // Pressing "Sync now" reloads the page (POST, redirect); nothing else needed here.
}());
