/* arbook invoice list: fetch the totals of the filtered set after the rows are shown.
   The totals add up every matching invoice (hundreds of milliseconds at a million rows), so the
   page renders its rows first and this fills the totals box from `data-src` (same filters). */
(function () {
  "use strict";
  var box = document.querySelector("[data-testid=totals][data-src]");
  if (!box || !window.fetch) { return; }
  fetch(box.getAttribute("data-src"), { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
    .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
    .then(function (html) { box.innerHTML = html; box.setAttribute("data-loaded", "1"); })
    .catch(function () {
      box.innerHTML = '<p class="message message--warning">The totals could not be computed. Reload the page to try again.</p>';
    });
}());
