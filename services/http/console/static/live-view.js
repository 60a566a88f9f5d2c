// The app's events as they happen (devreg streams them from its events topic), newest first,
// optionally only one channel's or one device's.

import { explain } from "./api.js";
import { h, route, setStatus, status, utc } from "./dom.js";
import { describe, known } from "./events.js";

const KEEP = 200; // lines kept on screen

export function liveView(client) {
  const channel = h("input", { id: "live-channel", autocomplete: "off", spellcheck: "false" });
  const device = h("input", { id: "live-device", autocomplete: "off", spellcheck: "false" });
  const toggle = h("button", { type: "submit" }, "Start");
  const note = status("Not listening. Start to see events as they happen.");
  note.id = "live-status";
  const lines = h("ol", { class: "timeline live", id: "live-events", reversed: true });
  const empty = h("p", { class: "muted", id: "live-empty" }, "No events yet.");
  const form = h(
    "form",
    { class: "tools" },
    h("label", { for: "live-channel" }, "Only channel"),
    channel,
    h("label", { for: "live-device" }, "Only device"),
    device,
    toggle,
  );
  const element = h(
    "section",
    {},
    h("h1", { tabindex: "-1" }, "Live"),
    h("p", { class: "muted small" }, "Events of this app as devreg records them, newest first. Leave both filters empty to see everything."),
    form,
    note,
    empty,
    lines,
  );
  let running = null; // the AbortController of the stream

  function stop(text = "Stopped.") {
    running?.abort();
    running = null;
    toggle.textContent = "Start";
    channel.disabled = device.disabled = false;
    setStatus(note, text);
  }

  function show(line) {
    const event = line.event;
    empty.hidden = true;
    const subject = event.device_id !== undefined
      ? h("a", { href: route("device", event.device_id) }, event.device_id)
      : h("span", { class: "muted" }, "channel");
    const at = event.occurred_at ?? line.timestamp;
    const item = h(
      "li",
      { class: `event ${known(event) ? "" : "unknown"}`, "data-at": at },
      h("time", { datetime: new Date(at).toISOString() }, utc(at)),
      subject,
      h("span", { class: "sentence" }, describe(event)),
      h("code", { class: "hash" }, event.hash ?? ""),
    );
    // Newest first, by the time each event happened: partitions arrive in no common order.
    const older = [...lines.children].find((child) => Number(child.dataset.at) <= at) ?? null;
    lines.insertBefore(item, older);
    while (lines.children.length > KEEP) lines.lastElementChild.remove();
  }

  async function start() {
    const controller = new AbortController();
    running = controller;
    toggle.textContent = "Stop";
    channel.disabled = device.disabled = true;
    setStatus(note, "Connecting…");
    const filters = { channel: channel.value.trim(), device: device.value.trim() };
    const what = [filters.channel && `channel ${filters.channel}`, filters.device && `device ${filters.device}`]
      .filter(Boolean).join(" and ") || "every channel and device";
    let ended = "The stream ended.";
    try {
      await client.live(filters, {
        ready: (info) => setStatus(note, `Listening: ${what} (${info.workers === 1 ? "one worker" : `${info.workers} workers`}).`, "ok"),
        message: show,
        end: (info) => { ended = `devreg ended the stream: ${info.reason}. Start again to go on.`; },
      }, controller.signal);
    } catch (error) {
      ended = explain(error);
    }
    if (running === controller) stop(ended);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (running) stop();
    else start();
  });
  return { element, leave: () => running?.abort() };
}
