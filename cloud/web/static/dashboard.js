// Frigo's dashboards (a household's, a retailer's): buttons call the JSON API (the sign-in cookie
// stands for the token or key; data-if-match sends If-Match, data-confirm asks first, data-reveal
// shows a field of the answer), the household's inventory follows the fridges' events and the
// retailer's sections their data, through server-sent events. No dependencies.
"use strict";

(function () {
  const root = document.getElementById("dashboard");
  if (!root) {
    return;
  }
  const household = root.dataset.household;
  const status = document.getElementById("status");

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  async function call(method, url, body, ifMatch) {
    const headers = { "Content-Type": "application/json", "X-Frigo-Web": "1", Accept: "application/json" };
    if (ifMatch) {
      headers["If-Match"] = ifMatch;
    }
    const response = await fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: headers,
      body: body === undefined ? undefined : body,
    });
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const answer = await response.json();
        detail = typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail);
      } catch (ignored) {
        // not JSON: keep the status text
      }
      throw new Error(detail);
    }
    return response;
  }

  // Fetch this page again and swap in the fresh copies of some of its sections.
  async function refresh(sectionIds) {
    const response = await fetch(window.location.pathname, { credentials: "same-origin" });
    if (!response.ok) {
      return;
    }
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const sectionId of sectionIds) {
      const replacement = fresh.getElementById(sectionId);
      const current = document.getElementById(sectionId);
      if (replacement && current) {
        current.replaceWith(document.importNode(replacement, true));
      }
    }
  }

  root.addEventListener("click", async function (event) {
    const button = event.target.closest("button[data-url]");
    if (!button) {
      return;
    }
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) {
      return;
    }
    const section = button.closest("section");
    button.disabled = true;
    try {
      const response = await call(
        button.dataset.method,
        button.dataset.url,
        button.dataset.body,
        button.dataset.ifMatch
      );
      let done = button.dataset.done || "Done";
      if (button.dataset.reveal) {
        // A value the server shows once (a new signing secret): into the status line, not the page.
        done += ": " + (await response.json())[button.dataset.reveal];
      }
      say(done);
      if (section) {
        await refresh([section.id]);
      }
    } catch (error) {
      button.disabled = false;
      say("Could not do that: " + error.message, true);
    }
  });

  const eraseForm = document.getElementById("erase-form");
  if (eraseForm) {
    eraseForm.addEventListener("submit", async function (event) {
      event.preventDefault();
      const typed = eraseForm.elements.confirm.value.trim();
      if (typed !== household) {
        say("Type the household id exactly to confirm the deletion.", true);
        eraseForm.elements.confirm.focus();
        return;
      }
      try {
        await call("DELETE", "/households/" + encodeURIComponent(household));
      } catch (error) {
        say("Could not delete: " + error.message, true);
        return;
      }
      document.querySelector("form.sign-out").submit();
    });
  }

  // Live inventory: one event per batch of stored events; reload the inventory section then.
  const inventory = document.getElementById("inventory");
  if (household && inventory && window.EventSource) {
    const marker = inventory.querySelector("[data-last-event]");
    const after = marker ? marker.dataset.lastEvent : "0";
    const source = new EventSource(
      "/households/" + encodeURIComponent(household) + "/stream?after=" + encodeURIComponent(after)
    );
    source.addEventListener("events", async function () {
      const response = await fetch(
        "/web/households/" + encodeURIComponent(household) + "/inventory",
        { credentials: "same-origin" }
      );
      if (response.ok) {
        document.getElementById("inventory").innerHTML = await response.text();
        inventory.dataset.updated = String(Date.now());
      }
    });
    window.addEventListener("pagehide", function () {
      source.close();
    });
  }

  // Live retailer page: the stream names the sections whose data moved; reload those.
  if (root.dataset.retailer && window.EventSource) {
    const source = new EventSource(
      "/retailer/stream?since=" + encodeURIComponent(root.dataset.marks || "")
    );
    source.addEventListener("changed", async function (event) {
      await refresh(JSON.parse(event.data).sections);
      root.dataset.updated = String(Date.now());
    });
    window.addEventListener("pagehide", function () {
      source.close();
    });
  }
})();
