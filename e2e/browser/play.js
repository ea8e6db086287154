#!/usr/bin/env node
// usage: node play.js hls|dash URL SECONDS SCREENSHOT.png
//
// Serves player.html and the hls.js / dash.js builds from node_modules on a loopback HTTP server
// of its own (a different origin from the media server, so the media server's CORS headers are
// exercised), plays URL in headless Chromium through playwright-core, waits (bounded) for playback
// to start, samples video.currentTime for SECONDS and prints ONE JSON line on stdout:
//   {ok, startup_ms, advanced_s, wall_s, frames, dropped, errors, ...diagnostics}
// startup_ms: from navigation start until currentTime was seen advancing while playing (null: never,
// within 20 s). advanced_s: currentTime progress during the SECONDS sampling window. errors: fatal
// player errors only (hls.js fatal ERRORs, every dash.js ERROR, video element errors, page exceptions).
// Exit 0: currentTime advanced by >= min(5, 0.5 * SECONDS) s and no fatal player error.
// Exit 1: playback failed (the JSON says why).
// Exit 2: harness failure (bad arguments, browser or npm packages missing, ...), message on stderr.
// PLAY_DEBUG=1 copies the page's console and every response to stderr.
// Requests to hosts other than loopback and the media URL's host are blocked (the test must not
// depend on the internet) and listed in "blocked".
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { CHROMIUM_ARGS, harnessFailer, findChromium } = require('./chromium');
const http = require('http');

const STARTUP_TIMEOUT_MS = 20000;
const HARD_TIMEOUT_EXTRA_MS = 45000;

const harnessFail = harnessFailer('play.js');

const [player, src, secsArg, shot] = process.argv.slice(2);
const secs = Number(secsArg);
if (!['hls', 'dash'].includes(player) || !src || !Number.isFinite(secs) || secs <= 0 || !shot) {
  harnessFail('usage: node play.js hls|dash URL SECONDS SCREENSHOT.png');
}
let srcUrl;
try { srcUrl = new URL(src); } catch (e) { harnessFail(`bad URL ${src}: ${e.message}`); }

const { chromium, executablePath } = findChromium(harnessFail);

const nm = path.join(__dirname, 'node_modules');
const files = {
  '/player.html': [path.join(__dirname, 'player.html'), 'text/html; charset=utf-8'],
  '/js/hls.min.js': [path.join(nm, 'hls.js/dist/hls.min.js'), 'text/javascript'],
  '/js/dash.all.min.js': [path.join(nm, 'dashjs/dist/modern/umd/dash.all.min.js'), 'text/javascript'],
};
for (const [, [f]] of Object.entries(files)) {
  if (!fs.existsSync(f)) harnessFail(`missing ${f} (run \`npm ci\` in ${__dirname})`);
}

const minAdvance = Math.min(5, 0.5 * secs);
let ctx = null;
let profile = null;
let server = null;
let exiting = false;

async function cleanup() {
  if (ctx) {
    const c = ctx;
    ctx = null;
    // A hung close must not hang us: playwright kills the browser when this process exits anyway.
    await Promise.race([c.close().catch(() => {}), new Promise(r => setTimeout(r, 10000))]);
  }
  if (server) { server.close(); server.closeAllConnections && server.closeAllConnections(); server = null; }
  if (profile) { try { fs.rmSync(profile, { recursive: true, force: true }); } catch (_) { /* ignore */ } profile = null; }
}

async function finish(code, report, message) {
  if (exiting) return;
  exiting = true;
  await cleanup();
  if (report) process.stdout.write(JSON.stringify(report) + '\n');
  if (message) process.stderr.write(`play.js: ${message}\n`);
  process.exit(code);
}

// Hard overall timeout: whatever happens, we are gone after SECONDS + startup + margin.
setTimeout(() => {
  finish(2, null, `harness failure: hard timeout (${secs}s + ${HARD_TIMEOUT_EXTRA_MS / 1000}s) exceeded`);
  setTimeout(() => process.exit(2), 12000).unref();
}, secs * 1000 + HARD_TIMEOUT_EXTRA_MS).unref();
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => finish(2, null, `harness failure: killed by ${sig}`));

async function main() {
  server = http.createServer((req, res) => {
    const f = files[req.url.split('?')[0]];
    if (!f || req.method !== 'GET') { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'Content-Type': f[1], 'Cache-Control': 'no-store' });
    fs.createReadStream(f[0]).pipe(res);
  });
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve); });
  const port = server.address().port;

  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'castgate-chromium-'));
  try {
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath, headless: true, args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 720 }, timeout: 30000,
    });
  } catch (e) {
    return finish(2, null, `harness failure: cannot launch Chromium (${executablePath}): ${e.message.split('\n')[0]}`);
  }

  const page = ctx.pages()[0] || await ctx.newPage();
  const consoleErrors = [];
  const blocked = [];
  const pageErrors = [];
  page.on('console', m => {
    if (process.env.PLAY_DEBUG) process.stderr.write(`console.${m.type()}: ${m.text().slice(0, 500)}\n`);
    if (m.type() === 'error' && consoleErrors.length < 10) consoleErrors.push(m.text().slice(0, 300));
  });
  if (process.env.PLAY_DEBUG) {
    const d0 = Date.now();
    page.on('response', r => process.stderr.write(`${Date.now() - d0}ms ${r.status()} ${r.url()}\n`));
  }
  page.on('pageerror', e => { if (pageErrors.length < 10) pageErrors.push('page exception: ' + String(e.message).slice(0, 300)); });
  const allowedHosts = new Set(['127.0.0.1', 'localhost', '[::1]', srcUrl.hostname]);
  await ctx.route('**/*', route => {
    const u = new URL(route.request().url());
    if (u.protocol === 'data:' || u.protocol === 'blob:' || allowedHosts.has(u.hostname)) return route.continue();
    if (blocked.length < 10) blocked.push(u.origin + u.pathname);
    return route.abort('blockedbyclient');
  });

  const readStatus = () => page.evaluate(() => {
    const s = window.playerStatus;
    return s ? JSON.parse(JSON.stringify(s)) : null;
  });

  const t0 = Date.now();
  const pageUrl = `http://127.0.0.1:${port}/player.html?player=${player}&src=${encodeURIComponent(src)}`;
  await page.goto(pageUrl, { timeout: 15000 });

  // Wait (bounded) for playback to start; give up early on a fatal error.
  let st = null;
  let startupMs = null;
  while (Date.now() - t0 < STARTUP_TIMEOUT_MS) {
    st = await readStatus();
    if (st && st.started) { startupMs = st.startedAtMs; break; }
    if ((st && st.errors.length) || pageErrors.length) break;
    await page.waitForTimeout(100);
  }

  let advanced = 0;
  let wall = 0;
  let maxStallS = 0;
  if (startupMs !== null) {
    const first = st.currentTime;
    const ta = Date.now();
    let last = first;
    let lastProgress = ta;
    while (Date.now() - ta < secs * 1000) {
      await page.waitForTimeout(Math.min(250, Math.max(1, secs * 1000 - (Date.now() - ta))));
      st = (await readStatus()) || st;
      const now = Date.now();
      if (st.currentTime > last) { last = st.currentTime; lastProgress = now; }
      maxStallS = Math.max(maxStallS, (now - lastProgress) / 1000);
      if (st.errors.length || pageErrors.length) break; // fatal: no point waiting
    }
    wall = (Date.now() - ta) / 1000;
    advanced = st.currentTime - first;
  }
  st = (await readStatus()) || st || { errors: [], warnings: [], events: [] };

  let shotError = null;
  try {
    fs.mkdirSync(path.dirname(path.resolve(shot)), { recursive: true });
    await page.screenshot({ path: shot, timeout: 10000 });
  } catch (e) { shotError = e.message.split('\n')[0]; }

  const errors = [...(st.errors || []), ...pageErrors];
  if (startupMs === null && errors.length === 0) errors.push(`playback did not start within ${STARTUP_TIMEOUT_MS} ms`);
  const ok = startupMs !== null && advanced >= minAdvance && errors.length === 0;
  const r3 = x => Math.round(x * 1000) / 1000;
  const report = {
    ok,
    startup_ms: startupMs,
    advanced_s: r3(advanced),
    wall_s: r3(wall),
    min_advance_s: minAdvance,
    frames: st.framesDecoded === undefined ? null : st.framesDecoded,
    dropped: st.framesDropped === undefined ? null : st.framesDropped,
    errors,
    player: st.version || player,
    size: `${st.width || 0}x${st.height || 0}`,
    max_stall_s: r3(maxStallS),
    warnings: (st.warnings || []).slice(0, 10),
    console_errors: consoleErrors,
    blocked,
    events: (st.events || []).slice(0, 12).map(e => JSON.parse(e)),
    screenshot: shotError ? null : path.resolve(shot),
  };
  if (shotError) report.screenshot_error = shotError;
  return finish(ok ? 0 : 1, report);
}

main().catch(e => finish(2, null, `harness failure: ${e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e}`));
