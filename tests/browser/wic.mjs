#!/usr/bin/env node
// Browser WICs for the eP-CSCF tests: Debian's chromium (headless, driven by
// playwright-core), one page per WIC, each served from its WWSF's origin
// (e.g. https://webrtc.socialnet.example) by request interception, so that
// the browser itself sets the WebSocket's Origin; nothing leaves the
// machine. The pages register over wss:// to the eP-CSCF with JsSIP or
// SIP.js and report what happens; this driver prints one JSON line per
// event on stdout.
//
//   node tests/browser/wic.mjs '<scenario JSON>'
//   node tests/browser/wic.mjs scenario.json
//   node tests/browser/wic.mjs - < scenario.json
//
// Scenario:
//   {
//     "wss": "wss://127.0.0.1:8443",          default URL of the WICs
//     "timeout": 90,                          whole run, seconds
//     "trust_cert": "/path/epcscf.crt",       the WSS certificate to trust
//                                             (else: ignore TLS errors)
//     "token_command": ["python3", "tests/e2e/mint_token.py"],
//          run for each GET /token?<query> of a page, with the query's
//          parameters appended as --name value; its stdout is the token
//     "fail_on": [{"event": "error"}],        any event matching one ends
//                                             the run (exit 1)
//     "wics": [{"name": "alice", "lib": "jssip" | "sipjs",
//               "origin": "https://webrtc.socialnet.example",
//               "uri": "sip:alice@socialnet.ims.example.net",
//               "token_queries": ["issuer=a&user=alice&lifetime=300"],
//                    one per token fetch, the last one repeated
//               "register_expires": 600, "register": true,
//               "renew_token": true, "max_renewals": 2,   (JsSIP: a new
//                    token after 401 invalid_token)
//               "stop_on_forbidden": true,  (JsSIP: ua.stop() after a 403)
//               "wss": "..."}],
//     "steps": [
//       {"wait": {"event": "registered", "wic": "alice"}, "count": 1,
//        "timeout": 20},               count matching events since the start
//       {"do": "message", "wic": "alice", "to": "sip:bob@...", "body": "hi",
//        "extra_headers": ["P-Asserted-Identity: <sip:x@y>"]},
//       {"do": "register" | "unregister" | "renew_token" | "stop" | "close",
//        "wic": "alice"},
//       {"sleep": 1.5}
//     ]
//   }
// A wait matches an event when every field it names is equal (a string
// value starting with "~" is a regular expression).
//
// Events: {"t": seconds, "event": ..., "wic": ..., ...}: started,
// tokenIssued (the driver), tokenFetched, connected, disconnected,
// registerSent, registerResponse (every answer to a REGISTER), registered,
// registrationFailed (status, reason, www_authenticate), unregistered,
// messageReceived (from, pai, body), messageSucceeded, messageFailed,
// console (with WIC_DEBUG=1), error, timeout, done.
//
// Exit status: 0 all steps done; 1 a failure (fail_on, page error, a step
// that threw); 2 a wait or the whole run timed out; 3 bad scenario or the
// browser could not start.
//
// Environment: WIC_CHROMIUM (default /usr/bin/chromium), WIC_DEBUG=1 (the
// pages' console on stdout as "console" events).

import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import esbuild from 'esbuild';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PAGE_DIR = path.join(HERE, 'page');
const NODE_MODULES = path.join(HERE, 'node_modules');
const CHROMIUM = process.env.WIC_CHROMIUM || '/usr/bin/chromium';
const DEBUG = !!process.env.WIC_DEBUG;
const T0 = Date.now();

// -- output ----------------------------------------------------------------

function emit(ev) {
  const line = Object.assign({ t: Math.round((Date.now() - T0) / 10) / 100 }, ev);
  process.stdout.write(JSON.stringify(line) + '\n');
  return line;
}

class Failure extends Error {
  constructor(message, code = 1) {
    super(message);
    this.code = code;
  }
}

// -- scenario --------------------------------------------------------------

function readScenario(argv) {
  const arg = argv[2];
  if (!arg || arg === '-h' || arg === '--help') {
    throw new Failure('usage: node wic.mjs <scenario JSON | file | ->', 3);
  }
  let text;
  if (arg === '-') {
    text = fs.readFileSync(0, 'utf8');
  } else if (arg.trim().startsWith('{')) {
    text = arg;
  } else {
    text = fs.readFileSync(arg, 'utf8');
  }
  let s;
  try {
    s = JSON.parse(text);
  } catch (e) {
    throw new Failure('scenario is not JSON: ' + e.message, 3);
  }
  if (!Array.isArray(s.wics) || s.wics.length === 0) {
    throw new Failure('scenario: "wics" must be a non-empty list', 3);
  }
  const names = new Set();
  for (const w of s.wics) {
    if (!w.name || names.has(w.name)) throw new Failure('scenario: each WIC needs a unique "name"', 3);
    names.add(w.name);
    w.lib = w.lib || 'jssip';
    if (!['jssip', 'sipjs'].includes(w.lib)) throw new Failure(`scenario: ${w.name}: lib must be jssip or sipjs`, 3);
    w.origin = new URL(w.origin || 'https://webrtc.socialnet.example').origin;
    w.wss = w.wss || s.wss;
    if (!w.wss || !w.uri) throw new Failure(`scenario: ${w.name}: needs "wss" and "uri"`, 3);
  }
  if (!Array.isArray(s.token_command) || s.token_command.length === 0) {
    throw new Failure('scenario: "token_command" must be a non-empty list', 3);
  }
  s.steps = s.steps || [];
  s.timeout = Number(s.timeout || 90);
  s.fail_on = s.fail_on || [];
  return s;
}

function matches(matcher, ev) {
  for (const [k, v] of Object.entries(matcher)) {
    const got = ev[k];
    if (typeof v === 'string' && v.startsWith('~')) {
      if (got === undefined || got === null || !new RegExp(v.slice(1)).test(String(got))) return false;
    } else if (got !== v) {
      return false;
    }
  }
  return true;
}

// -- events and waits --------------------------------------------------------

const events = [];
const waiters = [];
let failOn = [];
let abort = null; // (Failure) -> void, set by main

function record(ev) {
  const line = emit(ev);
  events.push(line);
  for (const m of failOn) {
    if (matches(m, line) && abort) {
      abort(new Failure('event matched fail_on: ' + JSON.stringify(line)));
    }
  }
  for (const w of waiters.slice()) w.check();
}

function waitFor(matcher, count, timeoutS, label) {
  return new Promise((resolve, reject) => {
    const w = {
      check() {
        const seen = events.filter((e) => matches(matcher, e));
        if (seen.length >= count) {
          clearTimeout(w.timer);
          waiters.splice(waiters.indexOf(w), 1);
          resolve(seen[count - 1]);
        }
      },
    };
    w.timer = setTimeout(() => {
      waiters.splice(waiters.indexOf(w), 1);
      const seen = events.filter((e) => matches(matcher, e)).length;
      reject(new Failure(`${label}: waited ${timeoutS} s for ${count} x ${JSON.stringify(matcher)}, saw ${seen}`, 2));
    }, timeoutS * 1000);
    waiters.push(w);
    w.check();
  });
}

function bounded(promise, seconds, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Failure(`${what}: no answer in ${seconds} s`, 2)), seconds * 1000);
    }),
  ]).finally(() => clearTimeout(timer));
}

// -- what the pages load ---------------------------------------------------

// JsSIP is published as CommonJS only (lib/*.js, no browser bundle):
// esbuild bundles it and its dependencies for the page, once per run.
let jssipBundle = null;
function jssip() {
  if (!jssipBundle) {
    const out = esbuild.buildSync({
      entryPoints: [path.join(NODE_MODULES, 'jssip', 'lib', 'JsSIP.js')],
      bundle: true,
      format: 'iife',
      globalName: 'JsSIP',
      platform: 'browser',
      write: false,
      logLevel: 'error',
    });
    jssipBundle = out.outputFiles[0].text;
  }
  return jssipBundle;
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript' };

// A file under root for a URL path, never outside it.
function fileUnder(root, rel) {
  const f = path.resolve(root, '.' + path.posix.normalize('/' + rel));
  if (!f.startsWith(root + path.sep) || !fs.existsSync(f) || !fs.statSync(f).isFile()) return null;
  return f;
}

function runTokenCommand(cmd, params) {
  const args = cmd.slice(1);
  for (const [k, v] of params) {
    if (/^[a-z][a-z0-9_]*$/i.test(k)) args.push('--' + k, v);
  }
  return new Promise((resolve, reject) => {
    execFile(cmd[0], args, { timeout: 15000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`token command failed: ${err.message} ${stderr}`.trim()));
      else resolve(stdout.trim());
    });
  });
}

function jwtClaims(token) {
  try {
    return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
  } catch (e) {
    return {};
  }
}

// Every HTTP(S) request of the browser lands here: the pages' origins get
// the pages, the libraries and the token endpoint; anything else is
// refused (the tests use no network but loopback).
function router(scenario, wicName) {
  const origins = new Set(scenario.wics.map((w) => w.origin));
  return async (route) => {
    const req = route.request();
    const url = new URL(req.url());
    if (!origins.has(url.origin)) {
      if (DEBUG) record({ event: 'console', wic: wicName, text: 'blocked ' + req.url() });
      return route.abort('blockedbyclient');
    }
    const p = url.pathname;
    try {
      if (p === '/token') {
        const token = await runTokenCommand(scenario.token_command, url.searchParams);
        const c = jwtClaims(token);
        record({ event: 'tokenIssued', wic: wicName, origin: url.origin, query: url.search.slice(1), jti: c.jti || null, exp: c.exp || null, iss: c.iss || null });
        return route.fulfill({ status: 200, contentType: 'text/plain', headers: { 'Cache-Control': 'no-store' }, body: token });
      }
      if (p === '/lib/jssip.js') {
        return route.fulfill({ status: 200, contentType: TYPES['.js'], body: jssip() });
      }
      let file = null;
      if (p.startsWith('/lib/sip.js/')) {
        file = fileUnder(path.join(NODE_MODULES, 'sip.js', 'lib'), p.slice('/lib/sip.js/'.length));
      } else if (!p.slice(1).includes('/')) {
        file = fileUnder(PAGE_DIR, p.slice(1));
      }
      if (!file) {
        return route.fulfill({ status: 404, contentType: 'text/plain', body: 'not found' });
      }
      return route.fulfill({ status: 200, contentType: TYPES[path.extname(file)] || 'application/octet-stream', body: fs.readFileSync(file) });
    } catch (e) {
      record({ event: 'error', wic: wicName, message: `serving ${p}: ${e.message}` });
      return route.fulfill({ status: 500, contentType: 'text/plain', body: String(e.message) });
    }
  };
}

// -- the browser -----------------------------------------------------------

// Chromium's switches. playwright-core adds its own defaults
// (--disable-background-networking, --disable-component-update,
// --no-first-run, --no-sandbox unless chromiumSandbox, ... and its own
// --disable-features list, which a second --disable-features would replace:
// see CHROMIUM_DISABLED_FEATURES).
const CHROMIUM_ARGS = [
  '--no-sandbox', // as root Chromium refuses to start with its sandbox
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking', // no update, safe-browsing or
  '--disable-component-update', //      variations fetches: the machine
  '--disable-sync', //                  has no network but loopback
  '--disable-default-apps',
  '--disable-extensions',
  '--no-default-browser-check',
  '--no-pings',
  // no DNS at all: the pages' origins are served by interception, the
  // eP-CSCF is an IP literal
  '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
];

// Local Network Access (Chromium 142+; "Private Network Access" before):
// a page of a public origin (https://webrtc.socialnet.example) may not open
// a WebSocket to a loopback address without the user's permission, which a
// headless run cannot give: without these, Chromium 156 fails the
// handshake with net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS (either of
// the first two is enough there; the others are the older Private Network
// Access names, ignored where unknown).
const CHROMIUM_DISABLED_FEATURES = [
  'LocalNetworkAccessChecks',
  'LocalNetworkAccessChecksWebSockets',
  'PrivateNetworkAccessSendPreflights',
  'PrivateNetworkAccessRespectPreflightResults',
  'BlockInsecurePrivateNetworkRequests',
];

// The eP-CSCF's certificate: with "trust_cert" (its PEM), Chromium trusts
// that key as if a CA had signed it (--ignore-certificate-errors-spki-list:
// the TLS handshake succeeds at once, as with a real certificate); without
// it, every context ignores certificate errors (ignoreHTTPSErrors: Chromium
// then first aborts each handshake with a "certificate unknown" alert,
// which the eP-CSCF logs as a TLS error, and retries).
function trustArgs(scenario) {
  if (!scenario.trust_cert) return [];
  const cert = new crypto.X509Certificate(fs.readFileSync(scenario.trust_cert));
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return ['--ignore-certificate-errors-spki-list=' + crypto.createHash('sha256').update(spki).digest('base64')];
}

async function launch(scenario) {
  if (!fs.existsSync(CHROMIUM)) throw new Failure(`no browser at ${CHROMIUM} (apt-get install chromium, or WIC_CHROMIUM)`, 3);
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    throw new Failure(`playwright-core missing: npm ci --prefix ${path.relative(process.cwd(), HERE) || '.'} (${e.message})`, 3);
  }
  // playwright's launch() gives the browser a fresh --user-data-dir of its
  // own (removed on close); HOME is a fresh directory too, so that nothing
  // is read from or left in the user's ~/.config or ~/.cache
  const homeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wic-chromium-home-'));
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    timeout: 30000,
    args: [...CHROMIUM_ARGS, ...trustArgs(scenario),
      '--disable-features=' + playwrightDisabledFeatures().concat(CHROMIUM_DISABLED_FEATURES).join(',')],
    env: Object.assign({}, process.env, { HOME: homeDir }),
  });
  return { browser, homeDir };
}

// playwright-core's (1.65) own --disable-features list, kept: a later
// --disable-features replaces an earlier one in Chromium.
function playwrightDisabledFeatures() {
  return [
    'AvoidUnnecessaryBeforeUnloadCheckSync', 'DestroyProfileOnBrowserClose',
    'HttpsUpgrades', 'HttpsFirstBalancedModeAutoEnable', 'LensOverlay',
    'MediaRouter', 'PaintHolding', 'ThirdPartyStoragePartitioning',
    'AvoidCorsURLLoaderRestartOnRedirect', 'TcpPortRandomizationWin',
    'OptimizationHints', 'NetworkTimeServiceQuerying', 'AimEnabled',
    'PreconnectToSearch',
  ];
}

async function openWic(browser, scenario, w) {
  const context = await browser.newContext({ ignoreHTTPSErrors: !scenario.trust_cert });
  context.setDefaultTimeout(15000);
  await context.route('**/*', router(scenario, w.name));
  await context.exposeBinding('wicReport', (_source, ev) => {
    record(Object.assign({}, ev, { wic: w.name }));
  });
  const page = await context.newPage();
  page.on('pageerror', (err) => record({ event: 'error', wic: w.name, message: 'page error: ' + err.message }));
  page.on('crash', () => record({ event: 'error', wic: w.name, message: 'page crashed' }));
  page.on('console', (msg) => {
    if (DEBUG || msg.type() === 'error') {
      record({ event: 'console', wic: w.name, type: msg.type(), text: msg.text() });
    }
  });
  page.on('websocket', (ws) => {
    record({ event: 'websocket', wic: w.name, url: ws.url() });
    ws.on('close', () => record({ event: 'websocketClosed', wic: w.name, url: ws.url() }));
    ws.on('socketerror', (e) => record({ event: 'websocketError', wic: w.name, url: ws.url(), message: String(e) }));
  });
  const file = w.lib === 'sipjs' ? 'sipjs.html' : 'jssip.html';
  await page.goto(`${w.origin}/${file}`, { timeout: 15000 });
  await page.waitForFunction(() => window.wic && window.wic.ready, null, { timeout: 15000 });
  const cfg = {
    name: w.name, wss: w.wss, uri: w.uri, display_name: w.display_name,
    token_queries: w.token_queries, register_expires: w.register_expires,
    register: w.register, renew_token: w.renew_token, max_renewals: w.max_renewals,
    stop_on_forbidden: w.stop_on_forbidden,
  };
  const info = await bounded(page.evaluate((c) => window.wic.start(c), cfg), 20, `${w.name}: start`);
  record({ event: 'started', wic: w.name, origin: w.origin, lib: info.lib, version: info.version });
  return { context, page, w };
}

async function runStep(step, i, wics) {
  const label = `step ${i}`;
  if (step.sleep !== undefined) {
    await new Promise((r) => setTimeout(r, Number(step.sleep) * 1000));
    return;
  }
  if (step.wait) {
    await waitFor(step.wait, step.count || 1, step.timeout || 20, label);
    return;
  }
  const wic = wics.get(step.wic);
  if (!wic) throw new Failure(`${label}: no WIC named ${step.wic}`, 3);
  const page = wic.page;
  switch (step.do) {
    case 'message':
      await bounded(page.evaluate((s) => { window.wic.sendMessage(s.to, s.body || 'hello', s.extra_headers || []); }, step), 10, label);
      return;
    case 'register':
      await bounded(page.evaluate(() => window.wic.register()), 10, label);
      return;
    case 'unregister':
      await bounded(page.evaluate(() => window.wic.unregister()), 10, label);
      return;
    case 'renew_token':
      await bounded(page.evaluate(() => window.wic.renewToken()), 20, label);
      return;
    case 'stop':
      await bounded(page.evaluate(() => window.wic.stop()), 10, label);
      return;
    case 'close':
      await bounded(wic.context.close(), 10, label);
      wics.delete(step.wic);
      return;
    default:
      throw new Failure(`${label}: unknown step ${JSON.stringify(step)}`, 3);
  }
}

async function main() {
  let scenario;
  try {
    scenario = readScenario(process.argv);
  } catch (e) {
    emit({ event: 'error', message: e.message });
    return e.code || 3;
  }
  failOn = scenario.fail_on;
  let browser = null;
  let homeDir = null;
  const wics = new Map();
  let failed = null;
  const aborted = new Promise((resolve) => {
    abort = (f) => {
      if (!failed) failed = f;
      resolve();
    };
  });
  for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => abort(new Failure(`got ${sig}`, 1)));
  }
  const overall = setTimeout(() => abort(new Failure(`the whole run took more than ${scenario.timeout} s`, 2)), scenario.timeout * 1000);
  const work = (async () => {
    ({ browser, homeDir } = await launch(scenario));
    record({ event: 'browser', version: browser.version(), executable: CHROMIUM });
    for (const w of scenario.wics) {
      wics.set(w.name, await openWic(browser, scenario, w));
    }
    for (let i = 0; i < scenario.steps.length; i++) {
      await runStep(scenario.steps[i], i, wics);
    }
  })().catch((e) => abort(e instanceof Failure ? e : new Failure(e.message || String(e), 1)));
  await Promise.race([work.then(() => null), aborted]);
  clearTimeout(overall);
  // tear down, each part bounded: un-REGISTER (best effort), then the browser
  await Promise.all([...wics].map(([name, wic]) => bounded(
    wic.page.evaluate(() => window.wic && window.wic.stop && window.wic.stop()), 6, `${name}: stop`,
  ).catch(() => { /* the page may be gone */ })));
  if (browser) {
    try {
      await bounded(browser.close(), 10, 'browser close');
    } catch (e) { /* killed at exit by playwright */ }
  }
  if (homeDir) fs.rmSync(homeDir, { recursive: true, force: true });
  if (failed) {
    emit({ event: failed.code === 2 ? 'timeout' : 'error', message: failed.message });
    process.stderr.write(`wic.mjs: ${failed.message}\n`);
    return failed.code;
  }
  emit({ event: 'done' });
  return 0;
}

main().then((code) => process.exit(code), (e) => {
  emit({ event: 'error', message: String(e && e.stack || e) });
  process.exit(1);
});
