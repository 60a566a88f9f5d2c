#!/usr/bin/env node
// Drives devreg with the official Backendless JS SDK (npm "backendless", see package.json) and
// prints ONE JSON object on stdout with everything observed. Exit code 0 unless this script
// itself crashed (bad configuration, SDK missing): SDK errors are results, not crashes.
//
// Environment:
//   DEVREG_URL        base URL of a devreg worker, e.g. http://127.0.0.1:8080 (no trailing slash)
//   DEVREG_APP_ID     app id      (classic form only)
//   DEVREG_API_KEY    REST API key (classic form only)
//   DEVREG_URL_FORM   "classic": initApp({appId, apiKey, serverURL}) -> /<appId>/<apiKey>/...
//                     "domain":  initApp(DEVREG_URL)                  -> /api/... (default app)
//   DEVREG_PLATFORM   optional, default "android" (the SDK upper-cases it)
//   DEVREG_OS_VERSION optional, default "14.0"; DEVREG_OS_VERSION_TYPE=number sends a JSON number
//   DEVREG_USER_TOKEN optional: every messaging call then carries a `user-token` header
//   DEVREG_STEP_TIMEOUT_MS  optional, default 10000: a step that takes longer is an error
//   DEVREG_TOTAL_TIMEOUT_MS optional, default 40000: after that, remaining steps fail at once
//                           (so a hung server still yields a full report before the caller's
//                           own timeout)
'use strict'

// Only our JSON goes to stdout: anything the SDK logs goes to stderr.
console.log = console.error.bind(console)
console.info = console.error.bind(console)

const crypto = require('crypto')
const path = require('path')

function fail(message) {
  process.stderr.write(`sdk_flow.js: ${message}\n`)
  process.exit(2)
}

const env = process.env
const baseUrl = (env.DEVREG_URL || '').replace(/\/+$/, '')
const form = env.DEVREG_URL_FORM || 'classic'
if (!/^https?:\/\//.test(baseUrl)) fail('DEVREG_URL must be set to http(s)://host:port')
if (form !== 'classic' && form !== 'domain') fail('DEVREG_URL_FORM must be "classic" or "domain"')
if (form === 'classic' && !(env.DEVREG_APP_ID && env.DEVREG_API_KEY)) {
  fail('DEVREG_APP_ID and DEVREG_API_KEY are required for the classic form')
}
const stepTimeoutMs = Number(env.DEVREG_STEP_TIMEOUT_MS || 10000)
const deadline = Date.now() + Number(env.DEVREG_TOTAL_TIMEOUT_MS || 40000)

const Backendless = require('backendless')
const sdkVersion = require(path.join(path.dirname(require.resolve('backendless')), '..', 'package.json')).version

// Same wire as the SDK's own encoding of an error (backendless-request ResponseError):
// code = body.code, message = body.message (or the raw body / "Status Code N (...)"),
// status = HTTP status. Network errors have a string code (ECONNREFUSED) and no status.
function describeError(e) {
  if (e === null || typeof e !== 'object') return { code: null, status: null, message: String(e) }
  let message = e.message
  if (typeof message !== 'string') {
    try { message = JSON.stringify(message) } catch (_) { message = String(message) }
  }
  return {
    code: e.code === undefined ? null : e.code,
    status: e.status === undefined ? null : e.status,
    message,
    body: e.body === undefined ? null : e.body,
    name: e.name || null,
    sdkResponseError: e.constructor ? e.constructor.name === 'ResponseError' : false,
  }
}

function jsonable(value) {
  if (value === undefined) return { undefined: true }
  try { return JSON.parse(JSON.stringify(value)) } catch (_) { return String(value) }
}

function withTimeout(promise, ms) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`step timed out after ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

const out = {
  sdk: { name: 'backendless', version: sdkVersion, node: process.version },
  form,
  baseUrl,
  steps: {},
  order: [],
}

async function step(name, sent, fn) {
  const record = { sent: jsonable(sent) }
  out.order.push(name)
  out.steps[name] = record
  const started = Date.now()
  try {
    const budget = Math.min(stepTimeoutMs, deadline - started)
    if (budget <= 0) throw new Error('not run: the overall time budget (DEVREG_TOTAL_TIMEOUT_MS) is spent')
    const value = await withTimeout(Promise.resolve().then(fn), budget)
    record.ok = true
    record.type = Array.isArray(value) ? 'array' : value === null ? 'null' : typeof value
    record.value = jsonable(value)
  } catch (e) {
    record.ok = false
    record.error = describeError(e)
  }
  record.ms = Date.now() - started
  return record
}

async function main() {
  if (form === 'classic') {
    Backendless.initApp({ appId: env.DEVREG_APP_ID, apiKey: env.DEVREG_API_KEY, serverURL: baseUrl })
  } else {
    Backendless.initApp(baseUrl) // string domain -> <domain>/api/...
  }
  out.appPath = Backendless.appPath

  const platform = env.DEVREG_PLATFORM || 'android'
  const rawVersion = env.DEVREG_OS_VERSION || '14.0'
  const version = env.DEVREG_OS_VERSION_TYPE === 'number' ? Number(rawVersion) : rawVersion
  const uuid = crypto.randomUUID()
  Backendless.setupDevice({ uuid, platform, version })
  out.device = { uuid, platform, version, sdkPlatform: Backendless.device.platform }

  if (env.DEVREG_USER_TOKEN) {
    // The SDK only sends `user-token` when one is cached (normally after a login).
    Backendless.LocalCache.set('user-token', env.DEVREG_USER_TOKEN)
    out.userToken = env.DEVREG_USER_TOKEN
  }

  // initApp already fired GET <appPath>/info; this is the same (memoised) promise.
  await step('appInfo', null, () => Backendless.appInfoPromise())

  const M = Backendless.Messaging
  const token1 = `tok1-${crypto.randomBytes(16).toString('hex')}`
  const token2 = `tok2-${crypto.randomBytes(16).toString('hex')}`
  out.tokens = { token1, token2 }

  const inOneHour = new Date(Date.now() + 3600e3)
  await step('register1', { token: token1, channels: ['news', 'sport'], expiration: inOneHour.toISOString(), expirationType: 'Date' },
    () => M.registerDevice(token1, ['news', 'sport'], inOneHour))

  await step('get1', null, () => M.getRegistrations())

  const inTwoHoursMs = Date.now() + 2 * 3600e3
  await step('register2', { token: token2, channels: ['alerts'], expiration: inTwoHoursMs, expirationType: 'number(ms)' },
    () => M.registerDevice(token2, ['alerts'], inTwoHoursMs))

  await step('get2', null, () => M.getRegistrations())

  // Re-naming a channel must give back the same registration id (stable per app/device/channel).
  const inThreeHours = new Date(Date.now() + 3 * 3600e3)
  await step('register3', { token: token2, channels: ['news'], expiration: inThreeHours.toISOString(), expirationType: 'Date' },
    () => M.registerDevice(token2, ['news'], inThreeHours))

  const oneHourAgo = new Date(Date.now() - 3600e3)
  await step('registerPastDate', { token: token2, channels: ['news'], expiration: oneHourAgo.toISOString(), expirationType: 'Date' },
    () => M.registerDevice(token2, ['news'], oneHourAgo))

  const oneHourAgoMs = Date.now() - 3600e3
  await step('registerPastMs', { token: token2, channels: ['news'], expiration: oneHourAgoMs, expirationType: 'number(ms)' },
    () => M.registerDevice(token2, ['news'], oneHourAgoMs))

  await step('pushTemplates', { deviceType: Backendless.device.platform },
    () => M.getPushTemplates(Backendless.device.platform))

  await step('unregister1', null, () => M.unregisterDevice())

  await step('getAfterUnregister', null, () => M.getRegistrations())

  await step('unregister2', null, () => M.unregisterDevice())
}

main().then(
  () => {
    process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0))
  },
  (e) => {
    out.crash = describeError(e)
    out.crash.stack = e && e.stack ? String(e.stack) : null
    process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(1))
  },
)
