// One device: its registration as GET answers it, the registration as of any instant, and its
// history as a timeline with a verdict on its hash chain (checked by devreg, page by page).

import { explain } from "./api.js";
import { clear, h, plural, route, setStatus, status, utc } from "./dom.js";
import { EMPTY, describe, evolve, known } from "./events.js";

const UNKNOWN_DEVICE = 5000;

export function deviceView(client, id) {
  const now = h("div", { id: "registration" }, status("Loading the registration…"));
  const picker = h("input", { id: "as-of-instant", type: "datetime-local", step: "0.001", required: true });
  const thenBox = h("div", { id: "as-of" });
  const verdict = status("Loading the history…");
  verdict.id = "chain-verdict";
  const timeline = h("ol", { class: "timeline", id: "timeline" });
  const more = h("button", { type: "button", hidden: true }, "Show later events");
  const asOfForm = h(
    "form",
    { class: "tools" },
    h("label", { for: "as-of-instant" }, "Instant (UTC)"),
    picker,
    h("button", { type: "submit" }, "Show the registration then"),
  );
  const element = h(
    "section",
    {},
    h("p", { class: "crumbs" }, h("a", { href: "#/channels" }, "Channels"), " / device"),
    h("h1", { tabindex: "-1" }, `Device ${id}`),
    h("h2", {}, "Registration now"),
    now,
    h("h2", {}, "As of an instant"),
    h("p", { class: "muted small" }, "The registration as devreg would have answered it at that instant."),
    asOfForm,
    thenBox,
    h("h2", {}, "History"),
    verdict,
    timeline,
    more,
  );

  async function showNow() {
    try {
      const [registration] = await client.registration(id);
      now.replaceChildren(card(registration));
    } catch (error) {
      const gone = error.code === UNKNOWN_DEVICE;
      now.replaceChildren(status(gone ? "This device has no registration now: it was " +
        "unregistered, or every channel expired. Its history below says what happened." : explain(error), gone ? "info" : "error"));
    }
  }

  async function showAsOf(ms) {
    thenBox.replaceChildren(status(`Loading the registration as of ${utc(ms)}…`));
    try {
      const [registration] = await client.asOf(id, ms);
      thenBox.replaceChildren(h("p", { class: "as-of-title" }, `As of ${utc(ms)}:`), card(registration));
    } catch (error) {
      thenBox.replaceChildren(status(error.code === UNKNOWN_DEVICE
        ? `At ${utc(ms)} this device had no registration.` : explain(error), error.code === UNKNOWN_DEVICE ? "info" : "error"));
    }
  }

  // The history, page by page; the chain holds if every page's check does.
  let state = EMPTY;
  let after = 0;
  let checked = 0;
  let broken = null;
  let unknownTypes = 0;

  async function showHistory() {
    more.hidden = true;
    let page;
    try {
      page = await client.history(id, after || null);
    } catch (error) {
      const none = error.code === UNKNOWN_DEVICE && after === 0;
      setStatus(verdict, none ? "devreg has no history for this device: it was never registered " +
        "in this app (device ids are case-sensitive)." : explain(error), none ? "info" : "error");
      return;
    }
    page.events.forEach((event, i) => {
      const check = page.checks[i];
      timeline.append(entry(event, check, state));
      state = evolve(state, event);
      if (check.status === "unknown") unknownTypes += 1;
    });
    checked += page.chain.checked;
    if (!page.chain.intact && !broken) broken = page.chain;
    after = page.nextAfter ?? after;
    more.hidden = page.nextAfter === null;
    sayVerdict(page.nextAfter !== null);
  }

  function sayVerdict(partial) {
    const sofar = partial ? " so far (more events to load)" : "";
    if (broken) {
      setStatus(verdict, `Hash chain broken at version ${broken.brokenAt}: ${broken.reason}.`, "error");
    } else {
      const rest = unknownTypes ? `; ${plural(unknownTypes, "later event")} of a type this devreg cannot check` : "";
      setStatus(verdict, `Hash chain intact${sofar}: ${plural(checked, "event")}, each hash ` +
        `recomputed from its content and linked to the one before${rest}.`, "ok");
    }
  }

  function entry(event, check, before) {
    const sentence = describe(event, before);
    const mark = check.status === "applied" ? "✓ hash checked" : check.status === "unknown"
      ? "not checked (unknown type)" : check.status === "broken" ? "✗ breaks the chain" : "not checked (after the break)";
    const at = event.occurred_at;
    const jump = h("button", { type: "button", class: "quiet small" }, "Registration then");
    jump.addEventListener("click", () => {
      picker.value = new Date(at).toISOString().slice(0, 23);
      showAsOf(at);
      thenBox.scrollIntoView({ block: "nearest" });
    });
    return h(
      "li",
      { class: `event ${known(event) ? "" : "unknown"} ${check.status}` },
      h("time", { datetime: new Date(at).toISOString() }, utc(at)),
      h("span", { class: "version" }, `v${event.version ?? "?"}`),
      h("span", { class: "sentence" }, sentence),
      h("span", { class: `check ${check.status}` }, mark),
      h("code", { class: "hash", title: "SHA-256 of the event's canonical form" }, event.hash ?? "no hash"),
      jump,
    );
  }

  asOfForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const ms = Date.parse(`${picker.value}Z`);
    if (Number.isNaN(ms)) {
      thenBox.replaceChildren(status("Pick a date and a time (UTC) first.", "error"));
      picker.focus();
      return;
    }
    showAsOf(ms);
  });
  more.addEventListener("click", () => showHistory().then(() => more.hidden || more.focus()));
  showNow();
  showHistory();
  return { element };
}

function card(r) {
  const channels = h("ul", { class: "inline" }, r.channels.map((c) => h("li", {}, h("a", { href: route("channel", c) }, c))));
  return h(
    "dl",
    { class: "card" },
    h("dt", {}, "Token"), h("dd", { class: "token" }, r.deviceToken),
    h("dt", {}, "OS"), h("dd", {}, `${r.os} ${r.osVersion}`.trim()),
    h("dt", {}, "Channels"), h("dd", {}, channels),
    h("dt", {}, "Expires"), h("dd", {}, r.expiration ? utc(r.expiration) : "never"),
    h("dt", {}, "Registration id"), h("dd", {}, h("code", {}, r.id)),
  );
}
