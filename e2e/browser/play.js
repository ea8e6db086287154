#!/usr/bin/env node
// usage: node play.js hls|dash|shaka URL SECONDS SCREENSHOT.png [--low-latency] [--settle S]
//                                                              [--live-delay S] [--seek S]
//                                                              [--max-buffer S]
//
// Serves player.html and the hls.js / dash.js / Shaka Player builds from node_modules on a loopback
// HTTP server of its own (a different origin from the media server, so the media server's CORS
// headers are exercised), plays URL in headless Chromium through playwright-core, waits (bounded)
// for playback to start, then --settle S seconds more (default 0), samples video.currentTime for
// SECONDS and prints ONE JSON line on stdout:
//   {ok, startup_ms, advanced_s, wall_s, frames, dropped, errors, max_stall_s,
//    latency_samples, latency_median_s, latency_p95_s, ...diagnostics}
// startup_ms: from navigation start until currentTime was seen advancing while playing (null: never,
// within 20 s). advanced_s: currentTime progress during the SECONDS sampling window. errors: fatal
// player errors only (hls.js fatal ERRORs, every dash.js ERROR, Shaka CRITICAL errors, video
// element errors, page exceptions). max_stall_s: the longest standstill of currentTime during the
// window, measured in the page every 20 ms.
// --low-latency: hls.js lowLatencyMode, dash.js live catch-up, Shaka streaming.lowLatencyMode (without
// it, each player's normal mode). --live-delay S: dash.js streaming.delay.liveDelay.
// Latency, sampled once a second during the window: Date.now() minus the program date of the
// playhead (hls.js playingDate, dash.js getCurrentLiveLatency(), Shaka getPlayheadTimeAsDate());
// latency_samples counts the samples where the player knew it (latency_unknown the others);
// median / p95 (nearest rank) / min / max are null without samples. Latency is reported, never
// judged: it does not affect ok.
// --seek S (video on demand): once playback has started (and settled), sets the video element's
// currentTime to S as a seek bar does, waits (bounded) for `seeked`, and only then samples for
// SECONDS, so advanced_s is playback going on from where the seek landed. Adds to the JSON:
// seek_target_s (S), seek_landed_s (currentTime at `seeked`), seek_frame_s (the media time of the
// first frame presented after it, null if the browser has no requestVideoFrameCallback), seeked_ms
// (from the seek to `seeked`), seek_buffered_before (the buffered time ranges, [[start, end]...],
// when the seek was asked) and, if `seeked` never came, seek_error (then ok is false).
// duration_s (the element's duration: Infinity is reported as null) is always reported, and so is
// the element's state at the end, for a report of playback that did not start or stopped:
// ready_state, paused, buffered ([[start, end]...]); console_warnings holds the page's first ten
// console warnings (dash.js logs its own at that level).
// --max-buffer S: the player buffers at most about S seconds ahead (hls.js maxBufferLength and
// maxMaxBufferLength, dash.js streaming.buffer.bufferTimeDefault / AtTopQuality /
// AtTopQualityLongForm), so that a seek far ahead lands outside what is buffered and the player
// must fetch the segment holding the target.
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
const HARD_TIMEOUT_EXTRA_MS = 80000;
const SEEK_TIMEOUT_MS = 20000;

const harnessFail = harnessFailer('play.js');

const USAGE = 'usage: node play.js hls|dash|shaka URL SECONDS SCREENSHOT.png [--low-latency] [--settle S] [--live-delay S] [--switch] [--seek S] [--max-buffer S]';
const positional = [];
let lowLatency = false;
let settle = 0;
let liveDelay = null;
let switching = false;
let seekTo = null;
let maxBuffer = null;
for (let args = process.argv.slice(2), i = 0; i < args.length; i++) {
  const a = args[i];
  const num = () => {
    const n = Number(args[++i]);
    if (!Number.isFinite(n) || n < 0) harnessFail(`${a} needs a number of seconds\n${USAGE}`);
    return n;
  };
  if (a === '--low-latency') lowLatency = true;
  else if (a === '--switch') switching = true;
  else if (a === '--settle') settle = num();
  else if (a === '--live-delay') liveDelay = num();
  else if (a === '--seek') seekTo = num();
  else if (a === '--max-buffer') maxBuffer = num();
  else if (a.startsWith('--')) harnessFail(`unknown option ${a}\n${USAGE}`);
  else positional.push(a);
}
const [player, src, secsArg, shot] = positional;
const secs = Number(secsArg);
if (positional.length !== 4 || !['hls', 'dash', 'shaka'].includes(player) || !src
    || !Number.isFinite(secs) || secs <= 0 || !shot) {
  harnessFail(USAGE);
}
let srcUrl;
try { srcUrl = new URL(src); } catch (e) { harnessFail(`bad URL ${src}: ${e.message}`); }

const { chromium, executablePath } = findChromium(harnessFail);

const nm = path.join(__dirname, 'node_modules');
const files = {
  '/player.html': [path.join(__dirname, 'player.html'), 'text/html; charset=utf-8'],
  '/js/hls.min.js': [path.join(nm, 'hls.js/dist/hls.min.js'), 'text/javascript'],
  '/js/dash.all.min.js': [path.join(nm, 'dashjs/dist/modern/umd/dash.all.min.js'), 'text/javascript'],
  '/js/shaka-player.compiled.js': [path.join(nm, 'shaka-player/dist/shaka-player.compiled.js'), 'text/javascript'],
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

// Hard overall timeout: whatever happens, we are gone after SECONDS + settle + startup + margin.
setTimeout(() => {
  finish(2, null, `harness failure: hard timeout (${secs}s + ${settle}s + ${HARD_TIMEOUT_EXTRA_MS / 1000}s) exceeded`);
  setTimeout(() => process.exit(2), 12000).unref();
}, (secs + settle) * 1000 + HARD_TIMEOUT_EXTRA_MS + (seekTo === null ? 0 : SEEK_TIMEOUT_MS)).unref();

// The q-quantile of sorted values by nearest rank (p95 of 20 samples = the 19th).
const quantile = (sorted, q) => sorted.length ? sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] : null;
const median = sorted => {
  const n = sorted.length;
  if (!n) return null;
  return n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
};
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
      viewport: { width: 1280, height: 720 }, timeout: 60000,
    });
  } catch (e) {
    return finish(2, null, `harness failure: cannot launch Chromium (${executablePath}): ${e.message.split('\n')[0]}`);
  }

  const page = ctx.pages()[0] || await ctx.newPage();
  const consoleErrors = [];
  const consoleWarnings = [];
  const blocked = [];
  const pageErrors = [];
  page.on('console', m => {
    if (process.env.PLAY_DEBUG) process.stderr.write(`console.${m.type()}: ${m.text().slice(0, 500)}\n`);
    if (m.type() === 'error' && consoleErrors.length < 10) consoleErrors.push(m.text().slice(0, 300));
    if (m.type() === 'warning' && consoleWarnings.length < 10) consoleWarnings.push(m.text().slice(0, 300));
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
  let pageUrl = `http://127.0.0.1:${port}/player.html?player=${player}&src=${encodeURIComponent(src)}`;
  if (lowLatency) pageUrl += '&ll=1';
  if (liveDelay !== null) pageUrl += `&liveDelay=${liveDelay}`;
  if (switching) pageUrl += '&switch=1';
  if (maxBuffer !== null) pageUrl += `&maxBuffer=${maxBuffer}`;
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

  // Settle: let a live player reach its steady distance from the edge before measuring.
  const fatal = () => (st && st.errors.length) || pageErrors.length;
  if (startupMs !== null && settle > 0) {
    const ts = Date.now();
    while (Date.now() - ts < settle * 1000 && !fatal()) {
      await page.waitForTimeout(Math.min(250, Math.max(1, settle * 1000 - (Date.now() - ts))));
      st = (await readStatus()) || st;
    }
  }

  // Seek, as a seek bar does, and wait for the element to say where it landed.
  let seek = null;
  if (seekTo !== null && startupMs !== null && !fatal()) {
    seek = await page.evaluate(([s, ms]) => window.playerStatus.seek(s, ms), [seekTo, SEEK_TIMEOUT_MS]);
    st = (await readStatus()) || st;
  }

  let advanced = 0;
  let wall = 0;
  let maxStallS = 0;
  const latencies = [];
  let latencyUnknown = 0;
  if (startupMs !== null && !fatal() && !(seek && seek.error)) {
    await page.evaluate(() => window.playerStatus.resetStall());
    st = (await readStatus()) || st;
    const first = st.currentTime;
    const ta = Date.now();
    let nextSample = ta;
    while (Date.now() - ta < secs * 1000) {
      const now = Date.now();
      if (now >= nextSample) {
        if (st.latency === null || st.latency === undefined) latencyUnknown++;
        else latencies.push(st.latency);
        nextSample += 1000;
      }
      const left = secs * 1000 - (Date.now() - ta);
      await page.waitForTimeout(Math.min(250, Math.max(1, Math.min(left, nextSample - Date.now()))));
      st = (await readStatus()) || st;
      if (fatal()) break; // fatal: no point waiting
    }
    wall = (Date.now() - ta) / 1000;
    advanced = st.currentTime - first;
    maxStallS = st.maxStallS || 0;
  }
  st = (await readStatus()) || st || { errors: [], warnings: [], events: [] };

  let shotError = null;
  try {
    fs.mkdirSync(path.dirname(path.resolve(shot)), { recursive: true });
    await page.screenshot({ path: shot, timeout: 10000 });
  } catch (e) { shotError = e.message.split('\n')[0]; }

  const errors = [...(st.errors || []), ...pageErrors];
  if (startupMs === null && errors.length === 0) errors.push(`playback did not start within ${STARTUP_TIMEOUT_MS} ms`);
  if (seek && seek.error) errors.push(`seek to ${seekTo} s: ${seek.error} (currentTime ${seek.currentTime}, buffered ${JSON.stringify(seek.ranges)})`);
  const ok = startupMs !== null && advanced >= minAdvance && errors.length === 0;
  const r3 = x => Math.round(x * 1000) / 1000;
  const lat = x => (x === null ? null : r3(x));
  const sortedLat = [...latencies].sort((a, b) => a - b);
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
    sizes: st.sizes || [],
    levels: st.levels || [],
    max_stall_s: r3(maxStallS),
    current_time_s: typeof st.currentTime === 'number' ? r3(st.currentTime) : null,
    ready_state: st.readyState === undefined ? null : st.readyState,
    paused: st.paused === undefined ? null : st.paused,
    buffered: st.buffered || [],
    duration_s: typeof st.duration === 'number' && Number.isFinite(st.duration) ? r3(st.duration) : null,
    low_latency: lowLatency,
    settle_s: settle,
    latency_samples: latencies.length,
    latency_unknown: latencyUnknown,
    latency_median_s: lat(median(sortedLat)),
    latency_p95_s: lat(quantile(sortedLat, 0.95)),
    latency_min_s: lat(sortedLat.length ? sortedLat[0] : null),
    latency_max_s: lat(sortedLat.length ? sortedLat[sortedLat.length - 1] : null),
    latencies_s: latencies.map(r3),
    // The player's own view at the end (hls.js: latency behind its live edge and its target;
    // dash.js: its target delay), and the playback rate (above 1 while catching up).
    player_latency: st.playerLatency === undefined ? null : st.playerLatency,
    playback_rate: st.playbackRate === undefined ? null : st.playbackRate,
    warnings: (st.warnings || []).slice(0, 10),
    console_errors: consoleErrors,
    console_warnings: consoleWarnings,
    blocked,
    events: (st.events || []).slice(0, 20).map(e => JSON.parse(e)),
    screenshot: shotError ? null : path.resolve(shot),
  };
  if (shotError) report.screenshot_error = shotError;
  if (seekTo !== null) {
    const ok = seek && !seek.error;
    report.seek_target_s = seekTo;
    report.seek_landed_s = ok ? r3(seek.landed) : null;
    report.seek_frame_s = ok && typeof seek.frame === 'number' ? r3(seek.frame) : null;
    report.seeked_ms = ok ? seek.ms : null;
    report.seek_buffered_before = ok ? seek.before : null;
    if (seek && seek.error) report.seek_error = seek.error;
  }
  return finish(ok ? 0 : 1, report);
}

main().catch(e => finish(2, null, `harness failure: ${e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e}`));
