// issueflow web UI: the buttons (re-run, cancel), the API key, and the run page's live
// timeline from GET /tasks/<id>/events. Plain browser JavaScript, no build step.
"use strict";

(function () {
  const KEY = "issueflow-api-key";

  function notice(text, isError) {
    const box = document.getElementById("notice");
    if (!box) return;
    box.textContent = text;
    box.classList.toggle("notice-error", Boolean(isError));
  }

  function headers() {
    const key = sessionStorage.getItem(KEY);
    return key ? { Authorization: "Bearer " + key } : {};
  }

  async function post(url) {
    const response = await fetch(url, { method: "POST", headers: headers() });
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (response.status === 401 || response.status === 403) {
      notice("This needs the API key: enter it at the top of the page.", true);
      const input = document.getElementById("api-key");
      if (input) input.focus();
      return null;
    }
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
      notice("Failed (" + response.status + "): " + detail, true);
      return null;
    }
    return body;
  }

  async function act(button) {
    button.disabled = true;
    try {
      if (button.dataset.action === "cancel") {
        const status = await post("/tasks/" + encodeURIComponent(button.dataset.taskId) + "/cancel");
        if (status) {
          notice("Run cancelled.");
          render(status);
          return;
        }
      } else if (button.dataset.action === "rerun") {
        const started = await post("/issues/" + encodeURIComponent(button.dataset.issueId) + "/enrich");
        if (started) {
          notice("Enrichment started.");
          window.location.assign("/ui/runs/" + encodeURIComponent(started.task_id));
          return;
        }
      }
    } catch (error) {
      notice("The API did not answer: " + error, true);
    }
    button.disabled = false;
  }

  // -- the run page ---------------------------------------------------------------------

  const run = document.getElementById("run");
  const finished = run ? run.dataset.finished.split(" ") : [];

  function badge(value) {
    const span = document.createElement("span");
    span.className = "badge badge-" + value.toLowerCase();
    span.textContent = value;
    return span;
  }

  function seconds(value) {
    if (value === null) return "–";
    if (value < 1) return Math.round(value * 1000) + " ms";
    if (value < 120) return value.toFixed(1) + " s";
    return (value / 60).toFixed(1) + " min";
  }

  function between(start, end) {
    if (!start || !end) return null;
    return Math.max(0, (Date.parse(end) - Date.parse(start)) / 1000);
  }

  function setCell(row, field, content) {
    const cell = row.querySelector('[data-field="' + field + '"]');
    if (!cell) return;
    if (typeof content === "string") cell.textContent = content;
    else cell.replaceChildren(content);
  }

  function render(status) {
    if (!run) return;
    document.getElementById("run-state").replaceChildren(badge(status.state));
    document.getElementById("run-progress").textContent =
      status.progress.completed + "/" + status.progress.total + " stages done";
    document.getElementById("run-error").textContent = status.error || "–";
    let ready = status.created_at;
    for (const stage of status.stages) {
      const row = run.querySelector('tr[data-stage="' + stage.name + '"]');
      if (!row) continue;
      setCell(row, "state", badge(stage.state));
      setCell(row, "wait", seconds(stage.started_at ? between(ready, stage.started_at) : null));
      setCell(row, "running", seconds(between(stage.started_at, stage.finished_at)));
      let retries = String(stage.retries);
      if (stage.state === "RETRY" && stage.retry_at) {
        retries += " (next at " + new Date(stage.retry_at).toISOString().slice(11, 19) + " UTC)";
      }
      setCell(row, "retries", retries);
      setCell(row, "error", stage.error || "");
      ready = stage.finished_at;
    }
    const result = document.getElementById("result");
    if (status.result) {
      const summary = document.createElement("p");
      summary.className = "summary-full";
      summary.textContent = status.result.ai_summary;
      const tags = document.createElement("p");
      tags.textContent = "Tags: " + (status.result.tags.join(", ") || "none");
      result.replaceChildren(summary, tags);
    }
    const done = finished.includes(status.state);
    const cancel = run.querySelector('[data-action="cancel"]');
    if (cancel) cancel.disabled = done;
    run.dataset.state = status.state;
    return done;
  }

  function follow() {
    const live = document.getElementById("live");
    if (finished.includes(run.querySelector("#run-state .badge").textContent)) return;
    const source = new EventSource(run.dataset.eventsUrl);
    source.onopen = function () {
      live.textContent = "live";
    };
    source.onmessage = function (event) {
      if (render(JSON.parse(event.data))) {
        source.close(); // the final status: nothing more will come
        live.textContent = "ended";
      }
    };
    source.onerror = function () {
      // The browser reconnects by itself and resumes with Last-Event-ID.
      if (source.readyState !== EventSource.CLOSED) live.textContent = "reconnecting…";
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    const form = document.getElementById("key-form");
    if (form) {
      const input = document.getElementById("api-key");
      input.value = sessionStorage.getItem(KEY) || "";
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        if (input.value) sessionStorage.setItem(KEY, input.value);
        else sessionStorage.removeItem(KEY);
        notice(input.value ? "The key is kept in this tab until you close it." : "Key removed.");
      });
    }
    const login = document.getElementById("login-form");
    if (login) {
      // The pages get the key as a cookie; re-run and cancel send it from this tab.
      login.addEventListener("submit", function () {
        const value = document.getElementById("login-key").value;
        if (value) sessionStorage.setItem(KEY, value);
      });
    }
    for (const button of document.querySelectorAll("button[data-action]")) {
      button.addEventListener("click", function () {
        act(button);
      });
    }
    if (run) follow();
  });
})();
