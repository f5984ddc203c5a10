// Refreshes the overview from /console/api/overview and draws the charts with plotly.js
// (served from the installed plotly package, never from a CDN).
"use strict";
(function () {
  const root = document.getElementById("overview");
  if (!root) return;
  const refresh = Number(root.dataset.refresh || "5") * 1000;
  const charts = (root.dataset.charts || "").split(",").filter(Boolean);

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    if (cls) td.className = cls;
    return td;
  }
  function rows(id, items, columns) {
    const body = document.getElementById(id);
    body.replaceChildren(...items.map((item) => {
      const tr = document.createElement("tr");
      columns.forEach(([key, cls]) => tr.appendChild(cell(item[key], cls ? cls(item) : "")));
      return tr;
    }));
    if (!items.length) {
      const tr = document.createElement("tr");
      const td = cell("keine");
      td.colSpan = columns.length;
      tr.appendChild(td);
      body.appendChild(tr);
    }
  }
  function label(labels) {
    return Object.values(labels || {}).join(" / ") || "gesamt";
  }
  function figures(data) {
    const names = {
      throughput: "Durchsatz (Ereignisse/s)", published: "Veröffentlicht (Ereignisse/s)",
      outbox_backlog: "Outbox-Rückstand", outbox_age: "Älteste unveröffentlichte Outbox-Zeile (s)",
      notifications: "Benachrichtigungen je Kanal und Status",
      claims: "Schäden je Status", points: "Punkte diesen Monat (gutgeschrieben/verfallen)",
    };
    const box = document.getElementById("figures");
    box.replaceChildren(...Object.entries(names).map(([key, title]) => {
      const section = document.createElement("section");
      const h = document.createElement("h3");
      h.textContent = title;
      const table = document.createElement("table");
      table.dataset.testid = "figure-" + key;
      const list = data.figures[key] || [];
      list.forEach((f) => {
        const tr = document.createElement("tr");
        tr.appendChild(cell(label(f.labels)));
        tr.appendChild(cell(Math.round(f.value * 100) / 100));
        table.appendChild(tr);
      });
      if (!list.length) {
        const tr = document.createElement("tr");
        tr.appendChild(cell("keine Daten"));
        table.appendChild(tr);
      }
      section.append(h, table);
      return section;
    }));
    document.getElementById("prometheus-missing").hidden = data.prometheus;
  }
  async function load() {
    try {
      const response = await fetch("/console/api/overview", { credentials: "same-origin" });
      if (response.status === 401 || response.status === 403) { location.href = "/console/login"; return; }
      const data = await response.json();
      rows("services-body", data.services, [["service"], ["status", (i) => "status-" + i.status], ["version"], ["detail"]]);
      rows("lag-body", data.lag, [["group"], ["lag"]]);
      rows("dlq-body", data.dead_letters, [["topic"], ["count"]]);
      rows("events-body", data.events, [["topic"], ["count"]]);
      document.getElementById("events-total").textContent = String(data.events_total);
      figures(data);
      document.getElementById("updated").textContent = new Date(data.at * 1000).toLocaleTimeString("de-DE");
      if (window.Plotly && data.prometheus) {
        for (const name of charts) {
          const series = await (await fetch("/console/api/series/" + name, { credentials: "same-origin" })).json();
          window.Plotly.react("chart-" + name, series.traces, {
            margin: { t: 10, r: 10, b: 40, l: 50 }, height: 260, showlegend: true,
            xaxis: { type: "date" }, yaxis: { rangemode: "tozero" },
          }, { displaylogo: false, responsive: true });
        }
      }
    } catch (error) {
      document.getElementById("updated").textContent = "Fehler beim Laden: " + error;
    }
  }
  // The next refresh is due `refresh` after this one ended, never while it runs: with
  // setInterval an overview slower than the interval piled requests up (six at once under
  // load), each slowing the others, and no refresh finished at all.
  function cycle() {
    load().finally(() => setTimeout(cycle, refresh));
  }
  cycle();
})();
