/* Espay batch pages: follow the sending progress without a manual reload, and keep a submit
   button from being pressed twice (the server refuses a second confirmation anyway). */
(function () {
  "use strict";

  document.querySelectorAll("form[data-once]").forEach(function (form) {
    form.addEventListener("submit", function () {
      // Disable after the submit has started, so the form still sends.
      window.setTimeout(function () {
        form.querySelectorAll("button[type=submit]").forEach(function (button) {
          button.disabled = true;
          if (button.dataset.busy) { button.textContent = button.dataset.busy; }
        });
      }, 0);
    });
  });

  var box = document.querySelector("[data-espay-progress]");
  if (!box || !window.fetch) { return; }
  var url = box.getAttribute("data-espay-progress");
  var bar = box.querySelector("progress");
  var number = new Intl.NumberFormat();
  var delay = 1500;

  function show(data) {
    if (bar) { bar.value = data.percent; bar.textContent = data.percent + "%"; }
    ["sent", "failed", "unknown", "pending", "chunks_done", "chunks_total"].forEach(function (name) {
      var el = box.querySelector('[data-field="' + name + '"]');
      if (el && typeof data[name] === "number") { el.textContent = number.format(data[name]); }
    });
  }

  function tick() {
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        show(data);
        if (data.finished || data.stalled || !data.active) {
          window.location.reload();  // the results (and any Resume button) are rendered by the server
          return;
        }
        delay = 1500;
        window.setTimeout(tick, delay);
      })
      .catch(function () {
        delay = Math.min(delay * 2, 15000);  // a network blip: try again, more slowly
        window.setTimeout(tick, delay);
      });
  }

  window.setTimeout(tick, 800);
})();
