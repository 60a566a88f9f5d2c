// Sentences for events. Known types get a sentence; a type this console does not know (a newer
// devreg's) is still shown, by its type, time and hash, so new kinds of events appear without
// a change here. `before` is what the device looked like before the event (a timeline folds
// it; a live line does not know it and passes null).

import { utc } from "./dom.js";

export const EMPTY = Object.freeze({ channels: new Map(), token: null, os: null, osVersion: null });

const list = (names) => (names.length ? names.join(", ") : "no channel");

function registered(event, before) {
  const channels = event.channels ?? [];
  const expires = event.expiration ? `, until ${utc(event.expiration)}` : "";
  const platform = `${event.os} ${event.os_version ?? ""}`.trim();
  if (!before || before.channels.size === 0) {
    return `Registered on ${list(channels)}${expires} (${platform}, token ${event.device_token})`;
  }
  const added = channels.filter((c) => !before.channels.has(c));
  const kept = channels.filter((c) => before.channels.has(c));
  const parts = [];
  if (added.length) parts.push(`Added to ${list(added)}${expires}`);
  if (kept.length) parts.push(`${parts.length ? "r" : "R"}enewed ${list(kept)}${expires}`);
  if (before.token !== null && before.token !== event.device_token) {
    parts.push(`token changed from ${before.token} to ${event.device_token}`);
  }
  if (before.os !== null && `${before.os} ${before.osVersion}` !== `${event.os} ${event.os_version ?? ""}`) {
    parts.push(`now ${platform}`);
  }
  return parts.join("; ") || "Registered again, nothing changed";
}

function unregistered(event, before) {
  const removed = event.channels ?? [];
  if (before && removed.length && removed.every((c) => before.channels.has(c))
      && before.channels.size === removed.length) {
    return `Unregistered (was on ${list(removed)})`;
  }
  // Without the device's state (a live line), the event alone cannot tell whether these
  // were all its channels.
  return before ? `Removed from ${list(removed)}` : `Unregistered from ${list(removed)}`;
}

function expired(event) {
  return `Expired on ${list(event.channels ?? [])} (its expiration was ${utc(event.expiration)})`;
}

function channelCreated(event) {
  return `Channel ${event.channel} created`;
}

// The token lifecycle (docs/design.md §12): each removes the device from every channel it was on.
const was = (event) => ((event.channels ?? []).length ? ` (was on ${list(event.channels)})` : "");

function tokenRejected(event) {
  return `Removed: ${event.provider} rejected its token (${event.reason}) for a push sent at ` +
    `${utc(event.sent_at)}${was(event)}`;
}

function superseded(event) {
  return `Superseded by ${event.by_device_id}, which registered the same token${was(event)}`;
}

function forgotten(event) {
  return `Forgotten (${event.reason}): its token and user fingerprint erased${was(event)}`;
}

const SENTENCES = {
  "device-registered/1": registered,
  "device-unregistered/1": unregistered,
  "registration-expired/1": expired,
  "channel-created/1": channelCreated,
  "token-rejected/1": tokenRejected,
  "device-superseded/1": superseded,
  "device-forgotten/1": forgotten,
};

export function known(event) {
  return Object.hasOwn(SENTENCES, event.type);
}

export function describe(event, before = null) {
  const sentence = SENTENCES[event.type];
  return sentence ? sentence(event, before) : `${event.type ?? "An event of no type"}`;
}

// Just enough of devreg's fold to word the next event (what was added, what changed).
export function evolve(state, event) {
  if (event.type === "device-registered/1") {
    const channels = new Map(state.channels);
    for (const name of event.channels ?? []) channels.set(name, event.expiration ?? null);
    return { channels, token: event.device_token, os: event.os, osVersion: event.os_version ?? "" };
  }
  if (event.type === "device-unregistered/1" || event.type === "registration-expired/1") {
    const channels = new Map(state.channels);
    for (const name of event.channels ?? []) channels.delete(name);
    return { ...state, channels };
  }
  if (event.type === "token-rejected/1" || event.type === "device-superseded/1") {
    return { ...state, channels: new Map() };
  }
  if (event.type === "device-forgotten/1") return { ...EMPTY };
  return state; // an unknown type: its effect is not known here
}
