/* The admin's gateway credential form (templates/admin/arbook/gatewaycredential/change_form.html).
 *
 * - Changing the provider reloads the form with that provider's secrets and options
 *   (?provider=...; an add form keeps the merchant, label and base URL typed so far). Nothing is
 *   saved by a switch; secrets are never carried in the URL.
 * - "Test connection" posts the form as it is, with _test_connection, and shows the JSON answer:
 *   the values on the form are checked, nothing is saved, and typed secrets stay in their fields.
 */
(function () {
  "use strict";

  function init() {
    const form = document.getElementById("gatewaycredential_form");
    if (!form) {
      return;
    }
    const provider = form.querySelector("#id_provider");
    if (provider) {
      provider.addEventListener("change", function () {
        const url = new URL(window.location.href);
        url.searchParams.set("provider", provider.value);
        ["merchant", "label", "base_url"].forEach(function (name) {
          const input = form.elements.namedItem(name);
          if (input && input.value) {
            url.searchParams.set(name, input.value);
          } else {
            url.searchParams.delete(name);
          }
        });
        window.location.assign(url.toString());
      });
    }

    const button = form.querySelector("[data-test-connection]");
    const output = document.getElementById("test-connection-result");
    if (!button || !output) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", async function () {
      const data = new FormData(form);
      data.set("_test_connection", "1");
      button.disabled = true;
      output.dataset.state = "running";
      output.textContent = "Testing the values on the form…";
      try {
        const response = await fetch(form.action || window.location.href, {
          method: "POST", body: data, credentials: "same-origin", headers: {"Accept": "application/json"},
        });
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        const result = await response.json();
        output.dataset.state = result.ok ? "ok" : "error";
        output.textContent = result.message;
      } catch (error) {
        output.dataset.state = "error";
        output.textContent = "The test could not run (" + error.message + ").";
      } finally {
        button.disabled = false;
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
