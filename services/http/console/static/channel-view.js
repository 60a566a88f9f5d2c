// The devices on one channel, a page at a time (devreg pages by device id), with an OS filter.

import { explain } from "./api.js";
import { clear, h, plural, route, setStatus, status, utc } from "./dom.js";
import { sparkline } from "./sparkline.js";

const PAGE = 50;
const SYSTEMS = ["IOS", "ANDROID", "WP", "OSX"];

export function channelView(client, name) {
  const note = status("Loading devices…");
  const os = h(
    "select",
    { id: "os-filter" },
    h("option", { value: "" }, "Every OS"),
    SYSTEMS.map((s) => h("option", { value: s }, s)),
  );
  const body = h("tbody");
  const table = h(
    "table",
    { class: "grid", id: "devices" },
    h("caption", { class: "visually-hidden" }, `Devices on ${name}`),
    h(
      "thead",
      {},
      h("tr", {}, ["Device", "OS", "OS version", "Token", "Expires"].map((t) => h("th", { scope: "col" }, t))),
    ),
    body,
  );
  const previous = h("button", { type: "button", disabled: true }, "Previous page");
  const next = h("button", { type: "button", disabled: true }, "Next page");
  const chartBox = h("figure", { class: "chart-large" });
  const element = h(
    "section",
    {},
    h("p", { class: "crumbs" }, h("a", { href: "#/channels" }, "Channels"), " / "),
    h("h1", { tabindex: "-1" }, `Channel ${name}`),
    chartBox,
    h("div", { class: "tools" }, h("label", { for: "os-filter" }, "Operating system"), os),
    note,
    table,
    h("div", { class: "pager" }, previous, next),
  );
  const cursors = [null]; // the cursor of each page shown so far
  let nextCursor = null;

  async function load() {
    setStatus(note, "Loading devices…");
    previous.disabled = next.disabled = true;
    let page;
    try {
      page = await client.devices(name, { limit: PAGE, os: os.value, cursor: cursors.at(-1) });
    } catch (error) {
      setStatus(note, explain(error), "error");
      return;
    }
    clear(body);
    for (const d of page.devices) {
      body.append(
        h(
          "tr",
          {},
          h("th", { scope: "row" }, h("a", { href: route("device", d.deviceId) }, d.deviceId)),
          h("td", {}, d.os),
          h("td", {}, d.osVersion),
          h("td", { class: "token" }, d.deviceToken),
          h("td", {}, d.expiration ? utc(d.expiration) : "never"),
        ),
      );
    }
    nextCursor = page.nextCursor;
    table.hidden = page.devices.length === 0;
    previous.disabled = cursors.length === 1;
    next.disabled = !nextCursor;
    const which = os.value ? `${os.value} devices` : "devices";
    if (!page.devices.length) {
      setStatus(note, cursors.length > 1 ? "No more devices." : `No ${which} on ${name} right now.`);
    } else {
      const first = (cursors.length - 1) * PAGE + 1;
      const more = nextCursor ? ", more on the next page" : "";
      setStatus(note, `${which[0].toUpperCase()}${which.slice(1)} ${first} to ${first + page.devices.length - 1}${more}.`);
    }
  }

  async function loadChart() {
    const until = Date.now();
    try {
      const channels = (await client.channels()).channels;
      const found = channels.find((c) => c.channel === name);
      if (!found) {
        chartBox.replaceChildren(h("figcaption", { class: "muted" }, "This app has no channel of that name."));
        return;
      }
      const since = Math.min(found.createdAt - 1, until - 60_000);
      const series = await client.series(name, { since, until, points: 60 });
      chartBox.replaceChildren(
        sparkline(series, { width: 480, height: 80, label: name }),
        h("figcaption", {}, `Devices on ${name} from ${utc(series.since)} to ${utc(series.until)}: ` +
          `${plural(series.devices.at(-1), "device")} now.`),
      );
    } catch (error) {
      chartBox.replaceChildren(h("figcaption", { class: "muted" }, `No chart: ${explain(error)}`));
    }
  }

  os.addEventListener("change", () => {
    cursors.length = 1;
    load();
  });
  next.addEventListener("click", () => {
    cursors.push(nextCursor);
    load().then(() => next.disabled ? previous.focus() : next.focus());
  });
  previous.addEventListener("click", () => {
    cursors.pop();
    load().then(() => previous.disabled ? next.focus() : previous.focus());
  });
  table.hidden = true;
  load();
  loadChart();
  return { element };
}
