// The console's shell: sign-in, the header, and the router (views are chosen by the URL's
// fragment, which never holds the key). The signed-in client is held in this module only.

import { connect, explain } from "./api.js";
import { clear, h, status, setStatus } from "./dom.js";
import { channelsView } from "./channels-view.js";
import { channelView } from "./channel-view.js";
import { deviceView } from "./device-view.js";
import { liveView } from "./live-view.js";

const view = document.getElementById("view");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const signOut = document.getElementById("sign-out");

let client = null; // the app id and admin key, in memory only
let leave = null; // what the current view must stop when left (a live stream)

const ROUTES = [
  [/^#\/channels$/, () => channelsView(client)],
  [/^#\/channel\/(.+)$/, (name) => channelView(client, name)],
  [/^#\/device\/(.+)$/, (id) => deviceView(client, id)],
  [/^#\/live$/, () => liveView(client)],
];

function render() {
  leave?.();
  leave = null;
  clear(view);
  if (!client) {
    view.append(signInForm());
    return;
  }
  const hash = location.hash || "#/channels";
  for (const [pattern, make] of ROUTES) {
    const match = pattern.exec(hash);
    if (!match) continue;
    let name;
    try {
      name = match[1] === undefined ? undefined : decodeURIComponent(match[1]);
    } catch {
      break;
    }
    const shown = make(name);
    leave = shown.leave ?? null;
    view.append(shown.element);
    markCurrent(hash);
    shown.element.querySelector("h1")?.focus();
    return;
  }
  location.replace("#/channels");
}

function markCurrent(hash) {
  for (const link of nav.querySelectorAll("a")) {
    const here = hash.startsWith(link.getAttribute("href"));
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function signInForm() {
  const appId = h("input", { id: "app-id", name: "app-id", required: true, autocomplete: "off", spellcheck: "false" });
  const key = h("input", { id: "admin-key", name: "admin-key", type: "password", required: true, autocomplete: "off" });
  const note = status();
  const form = h(
    "form",
    { class: "sign-in", novalidate: true },
    h("h1", { tabindex: "-1" }, "Sign in"),
    h("p", {}, "Sign in with an app id and that app's admin key."),
    h("label", { for: "app-id" }, "App id"),
    appId,
    h("label", { for: "admin-key" }, "Admin key"),
    key,
    h("button", { type: "submit" }, "Sign in"),
    note,
    h(
      "p",
      { class: "muted small" },
      "The key stays in this page's memory only: it is not stored (no cookie, no local " +
        "storage), never put in a URL, and forgotten when you sign out, reload or close the tab.",
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!appId.value.trim() || !key.value) {
      setStatus(note, "Enter both the app id and its admin key.", "error");
      (appId.value.trim() ? key : appId).focus();
      return;
    }
    setStatus(note, "Checking…");
    const candidate = connect(appId.value.trim(), key.value);
    try {
      await candidate.channels();
    } catch (error) {
      setStatus(note, explain(error), "error");
      key.focus();
      return;
    }
    key.value = "";
    client = candidate;
    who.textContent = `App ${client.appId}`;
    for (const el of [nav, who, signOut]) el.hidden = false;
    render();
  });
  queueMicrotask(() => appId.focus());
  return form;
}

signOut.addEventListener("click", () => {
  client = null;
  for (const el of [nav, who, signOut]) el.hidden = true;
  who.textContent = "";
  render();
});

window.addEventListener("hashchange", render);
render();
