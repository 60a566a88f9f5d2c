// Every channel of the app with its active device count: searchable, sortable, and a small
// chart per channel of its devices over time (folded from the history by devreg).

import { explain } from "./api.js";
import { clear, h, plural, route, setStatus, status, utc } from "./dom.js";
import { sparkline } from "./sparkline.js";

const POINTS = 30;
const CHARTS_AT_ONCE = 2; // the machine that serves this also serves devices

const COLUMNS = [
  ["channel", "Channel", (a, b) => a.channel.localeCompare(b.channel)],
  ["devices", "Devices now", (a, b) => a.devices - b.devices || a.channel.localeCompare(b.channel)],
  ["createdAt", "Created", (a, b) => a.createdAt - b.createdAt || a.channel.localeCompare(b.channel)],
];

export function channelsView(client) {
  const note = status("Loading channels…");
  const search = h("input", { id: "channel-search", type: "search", autocomplete: "off", spellcheck: "false" });
  const body = h("tbody");
  const headRow = h("tr");
  const table = h("table", { class: "grid", id: "channels" }, h("caption", { class: "visually-hidden" }, "Channels"), h("thead", {}, headRow), body);
  const element = h(
    "section",
    {},
    h("h1", { tabindex: "-1" }, "Channels"),
    h("div", { class: "tools" }, h("label", { for: "channel-search" }, "Search channels"), search),
    note,
    table,
  );
  let channels = [];
  let sort = { key: "channel", descending: false };
  const charts = new Map(); // channel -> series, or an Error
  let stopped = false;

  function header() {
    clear(headRow);
    for (const [key, label] of COLUMNS) {
      const active = sort.key === key;
      const order = active ? (sort.descending ? "descending" : "ascending") : "none";
      const button = h(
        "button",
        { type: "button", class: "sort", "data-key": key },
        label,
        h("span", { "aria-hidden": "true" }, active ? (sort.descending ? " ▼" : " ▲") : ""),
      );
      button.addEventListener("click", () => {
        sort = { key, descending: active ? !sort.descending : key !== "channel" };
        header();
        rows();
        headRow.querySelector(`button[data-key="${key}"]`)?.focus();
      });
      headRow.append(h("th", { scope: "col", "aria-sort": order }, button));
    }
    headRow.append(h("th", { scope: "col" }, "Devices over time"));
  }

  function rows() {
    const wanted = search.value.trim().toLowerCase();
    const compare = COLUMNS.find(([key]) => key === sort.key)[2];
    const shown = channels.filter((c) => c.channel.toLowerCase().includes(wanted)).sort(compare);
    if (sort.descending) shown.reverse();
    clear(body);
    for (const c of shown) {
      body.append(
        h(
          "tr",
          {},
          h("th", { scope: "row" }, h("a", { href: route("channel", c.channel) }, c.channel)),
          h("td", { class: "number" }, c.devices.toLocaleString("en")),
          h("td", {}, utc(c.createdAt)),
          h("td", { class: "chart", "data-channel": c.channel }, chart(c.channel)),
        ),
      );
    }
    table.hidden = channels.length === 0;
    if (!channels.length) {
      setStatus(note, "No channels yet. A channel appears when a device registers on it " +
        "(a registration that names none goes to “default”).");
    } else if (!shown.length) {
      setStatus(note, `No channel name contains “${search.value.trim()}”.`);
    } else {
      const of = shown.length === channels.length ? "" : ` of ${channels.length}`;
      setStatus(note, `${plural(shown.length, "channel")}${of}.`);
    }
  }

  function chart(name) {
    const series = charts.get(name);
    if (series === undefined) return h("span", { class: "muted small" }, "…");
    if (series instanceof Error) return h("span", { class: "muted small" }, "no chart");
    return sparkline(series, { label: name });
  }

  async function loadCharts() {
    const queue = [...channels];
    const now = Date.now();
    async function worker() {
      while (queue.length && !stopped) {
        const c = queue.shift();
        try {
          const since = Math.min(c.createdAt - 1, now - 60_000);
          charts.set(c.channel, await client.series(c.channel, { since, until: now, points: POINTS }));
        } catch (error) {
          charts.set(c.channel, error);
        }
        for (const cell of body.querySelectorAll("td.chart")) {
          if (cell.dataset.channel === c.channel) cell.replaceChildren(chart(c.channel));
        }
      }
    }
    await Promise.all(Array.from({ length: CHARTS_AT_ONCE }, worker));
  }

  search.addEventListener("input", rows);
  header();
  table.hidden = true;
  client
    .channels()
    .then((answer) => {
      channels = answer.channels;
      rows();
      loadCharts();
    })
    .catch((error) => setStatus(note, explain(error), "error"));
  return { element, leave: () => { stopped = true; } };
}
