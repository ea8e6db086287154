#!/usr/bin/env node
// usage: node console.js CONSOLE_URL TOKEN|- STREAM RELAY_TARGET RELAY_STREAM SCREENSHOT.png [reconnect]
//
// Drives castgate's web console (served by castgate at CONSOLE_URL) in headless Chromium through
// playwright-core, as an operator would:
//   1. the page, before the token is entered, says the API wants one (401); with TOKEN `-`
//      (castgate has no api.token: loopback clients only) this step is skipped;
//   2. with the token, STREAM is listed with its codecs, resolution, fps, bitrate, uptime;
//      with CONSOLE_SRT_STREAM set, that stream is listed as an SRT publisher with its rate;
//   3. "Watch" plays it in the console's own MSE player: currentTime advances, through
//      INJECTED_FAILURES media segment requests answered 503 by this script once it plays (the
//      player retries them); the stream's players column then counts the page as its one HLS
//      viewer ("1 (hls 1)");
//      with `reconnect`, it then prints {"event":"playing"}, waits for a line on stdin (the test
//      has replaced the publisher meanwhile) and checks that playback goes on 4 s past the end
//      of what was buffered then, i.e. across the publisher switch;
//   4. the relay form creates a relay STREAM -> RELAY_TARGET; its row goes "live" with frames
//      sent, and RELAY_STREAM (what the relay publishes) shows up in the stream list;
//   5. a screenshot is saved; the HLS, DASH and OpenAPI links answer 200;
//   6. "Stop" deletes the relay: its row and RELAY_STREAM leave the page;
//   7. with CONSOLE_SOURCE_URL set, the source form creates a pulled source of it into
//      STREAM-pulled (a bad URL first: the API's reason shows); its row goes "live" with
//      frames, the URL redacted; "Stop" deletes it: its row and STREAM-pulled leave the page.
// Prints ONE JSON line on stdout: {ok, failed_step, steps: {...}, errors, blocked, ...}.
// Exit 0: every step passed. Exit 1: a step failed (the JSON says which and why).
// Exit 2: harness failure (arguments, Chromium or playwright-core missing), message on stderr.
// Every wait polls the page for its condition with a deadline; nothing sleeps and hopes.
// Requests to any host but the console's are blocked and listed in "blocked": the console must
// load nothing from another site.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { CHROMIUM_ARGS, harnessFailer, findChromium } = require('./chromium');

const STEP_TIMEOUT_MS = 45000;
const INJECTED_FAILURES = 3;
const PLAY_MIN_ADVANCE_S = 4;

const harnessFail = harnessFailer('console.js');

const [consoleUrl, token, stream, relayTarget, relayStream, shot, mode] = process.argv.slice(2);
if (!consoleUrl || !token || !stream || !relayTarget || !relayStream || !shot) {
  harnessFail('usage: node console.js CONSOLE_URL TOKEN STREAM RELAY_TARGET RELAY_STREAM SCREENSHOT.png');
}
let origin;
try { origin = new URL(consoleUrl); } catch (e) { harnessFail(`bad URL ${consoleUrl}: ${e.message}`); }

const { chromium, executablePath } = findChromium(harnessFail);

let ctx = null;
let profile = null;
let failuresToInject = 0;
let failuresInjected = 0;
const report = { ok: false, failed_step: null, steps: {}, errors: [], console_errors: [], blocked: [] };

async function finish(code, message) {
  if (ctx) {
    const c = ctx;
    ctx = null;
    await Promise.race([c.close().catch(() => {}), new Promise(r => setTimeout(r, 10000))]);
  }
  if (profile) { try { fs.rmSync(profile, { recursive: true, force: true }); } catch (_) { /* ignore */ } }
  if (code !== 2) process.stdout.write(JSON.stringify(report) + '\n');
  if (message) process.stderr.write(`console.js: ${message}\n`);
  process.exit(code);
}

setTimeout(() => finish(2, 'harness failure: hard timeout (240 s)'), 240000).unref();

class StepFailed extends Error {}

/** The next line the test writes on our stdin. */
function stdinLine(timeoutMs) {
  return new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new StepFailed(`no line on stdin within ${timeoutMs} ms`)), timeoutMs);
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', d => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) { clearTimeout(t); process.stdin.pause(); resolve(buf.slice(0, nl).trim()); }
    });
    process.stdin.on('end', () => { clearTimeout(t); reject(new StepFailed('stdin closed')); });
  });
}

/** Polls `probe` (returns a truthy value when done) until the deadline. */
async function until(page, what, probe, timeoutMs = STEP_TIMEOUT_MS) {
  const t0 = Date.now();
  let last = null;
  while (Date.now() - t0 < timeoutMs) {
    last = await probe();
    if (last && last.done) return last;
    await page.waitForTimeout(200);
  }
  throw new StepFailed(`${what}: not within ${timeoutMs} ms (last seen: ${JSON.stringify(last)})`);
}

async function step(name, f) {
  const t0 = Date.now();
  try {
    const out = await f();
    report.steps[name] = Object.assign({ ms: Date.now() - t0 }, out || {});
  } catch (e) {
    report.failed_step = name;
    report.errors.push(`${name}: ${e.message.split('\n')[0]}`);
    throw e;
  }
}

async function main() {
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'castgate-console-'));
  try {
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath, headless: true, args: CHROMIUM_ARGS,
      viewport: { width: 1400, height: 1100 }, timeout: 60000,
    });
  } catch (e) {
    return finish(2, `harness failure: cannot launch Chromium (${executablePath}): ${e.message.split('\n')[0]}`);
  }
  await ctx.route('**/*', route => {
    const u = new URL(route.request().url());
    if (u.host === origin.host && failuresToInject > 0 && /\/seg-\d+\.m4s$/.test(u.pathname)) {
      failuresToInject -= 1;
      failuresInjected += 1;
      return route.fulfill({ status: 503, body: 'injected by console.js' });
    }
    if (u.protocol === 'data:' || u.protocol === 'blob:' || u.host === origin.host) return route.continue();
    if (report.blocked.length < 10) report.blocked.push(u.origin + u.pathname);
    return route.abort('blockedbyclient');
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  page.on('console', m => {
    if (process.env.PLAY_DEBUG) process.stderr.write(`console.${m.type()}: ${m.text().slice(0, 500)}\n`);
    if (m.type() === 'error' && report.console_errors.length < 10) report.console_errors.push(m.text().slice(0, 300));
  });
  page.on('pageerror', e => report.errors.push('page exception: ' + String(e.message).slice(0, 300)));

  const text = sel => page.evaluate(s => {
    const e = document.querySelector(s);
    return e ? e.textContent : null;
  }, sel);
  const streamRow = name => page.evaluate(n => {
    const tr = Array.from(document.querySelectorAll('#streams tbody tr')).find(r => r.dataset.stream === n);
    return tr ? Array.from(tr.cells).map(c => c.textContent) : null;
  }, name);
  const sourceRow = id => page.evaluate(i => {
    const tr = document.querySelector(`#sources tbody tr[data-source-id="${i}"]`);
    return tr ? Array.from(tr.cells).map(c => c.textContent) : null;
  }, String(id));
  const relayRow = id => page.evaluate(i => {
    const tr = document.querySelector(`#relays tbody tr[data-relay-id="${i}"]`);
    return tr ? Array.from(tr.cells).map(c => c.textContent) : null;
  }, String(id));

  try {
    const noToken = token === '-';
    await step('load', async () => {
      const res = await page.goto(consoleUrl, { timeout: 15000 });
      const csp = res.headers()['content-security-policy'] || null;
      if (noToken) return { http_status: res.status(), csp };
      const status = await until(page, 'the page asks for the API token', async () => {
        const s = await text('#status');
        return { done: s !== null && s.includes('401'), status: s };
      });
      return { http_status: res.status(), csp, status: status.status };
    });

    await step('token', async () => {
      if (!noToken) {
        await page.fill('#token', token);
        await page.click('#token-save');
      }
      const seen = await until(page, `${stream} listed with its video and audio`, async () => {
        const row = await streamRow(stream);
        const status = await text('#status');
        return { done: !!row && row[1].includes('avc1') && row[2].includes('mp4a'), row, status };
      });
      return { row: seen.row, status: seen.status };
    });

    // The SRT table: a publisher of CONSOLE_SRT_STREAM listed with
    // libsrt's counters (the RTT and rate arrive within a second or two).
    const srtStream = process.env.CONSOLE_SRT_STREAM;
    if (srtStream) {
      await step('srt', async () => {
        const seen = await until(page, `${srtStream} listed as an SRT publisher`, async () => {
          const rows = await page.evaluate(() => Array.from(document.querySelectorAll('#srt tbody tr'))
            .map(tr => Array.from(tr.cells).map(c => c.textContent)));
          const row = rows.find(r => r[1] === srtStream && r[2] === 'publish');
          return { done: !!row && row[5].endsWith('Mb/s'), row, rows, count: await text('#srt-count') };
        });
        return { row: seen.row, count: seen.count };
      });
    }

    const video = () => page.evaluate(() => {
      const v = document.getElementById('video');
      const p = window.castgatePlayer;
      const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {};
      const b = v.buffered;
      return {
        currentTime: v.currentTime, paused: v.paused, readyState: v.readyState,
        width: v.videoWidth, height: v.videoHeight, frames: q.totalVideoFrames, dropped: q.droppedVideoFrames,
        bufferedEnd: b.length ? b.end(b.length - 1) : 0, ranges: b.length,
        player: p ? JSON.parse(JSON.stringify(p.status)) : null,
      };
    });

    await step('play', async () => {
      const before = await streamRow(stream);
      const uptimeBefore = before ? before[4] : null;
      const t0 = Date.now();
      await page.click(`#streams tbody tr[data-stream="${stream}"] button.watch`);
      const started = await until(page, 'the player starts', async () => {
        const v = await video();
        if (v.player && v.player.state === 'error') throw new StepFailed(`player error: ${v.player.error}`);
        return { done: v.player && v.player.state === 'playing' && v.currentTime > 0, ...v };
      });
      const startupMs = Date.now() - t0;
      failuresToInject = INJECTED_FAILURES;
      const first = started.currentTime;
      const ta = Date.now();
      const played = await until(page, `currentTime advances by ${PLAY_MIN_ADVANCE_S} s`, async () => {
        const v = await video();
        if (v.player && v.player.state === 'error') throw new StepFailed(`player error: ${v.player.error}`);
        return { done: v.currentTime - first >= PLAY_MIN_ADVANCE_S && failuresToInject === 0, advanced_s: v.currentTime - first, injected: failuresInjected, ...v };
      });
      // The page refreshed by itself meanwhile: the uptime moved on.
      const refreshed = await until(page, 'the stream list refreshes by itself', async () => {
        const row = await streamRow(stream);
        return { done: !!row && uptimeBefore !== null && row[4] !== uptimeBefore, before: uptimeBefore, after: row && row[4] };
      });
      // This page's own player is the stream's one HLS viewer (the test's
      // earlier playlist poll, another client, expires from the count).
      const viewers = await until(page, 'the players column shows this page as an HLS viewer', async () => {
        const row = await streamRow(stream);
        return { done: !!row && row[6] === '1 (hls 1)', players: row && row[6] };
      });
      return {
        players: viewers.players,
        refreshed: { before: refreshed.before, after: refreshed.after },
        injected_failures: failuresInjected,
        startup_ms: startupMs, advanced_s: played.currentTime - first, wall_s: (Date.now() - ta) / 1000,
        width: played.width, height: played.height, frames: played.frames, dropped: played.dropped,
        player: played.player,
      };
    });

    if (mode === 'reconnect') {
      await step('reconnect', async () => {
        process.stdout.write(JSON.stringify({ event: 'playing' }) + '\n');
        const word = await stdinLine(90000);
        const edge = (await video()).bufferedEnd;
        const after = await until(page, 'playback goes on past the publisher switch', async () => {
          const v = await video();
          if (v.player && v.player.state === 'error') throw new StepFailed(`player error: ${v.player.error}`);
          return { done: v.currentTime >= edge + 4, edge, ...v };
        });
        return { word, edge, current_time: after.currentTime, ranges: after.ranges, player: after.player };
      });
    }

    let relayId = null;
    await step('relay_create', async () => {
      // A target the API refuses: the form shows the API's reason.
      await page.fill('#relay-stream', stream);
      await page.fill('#relay-target', 'ftp://example.invalid/x');
      await page.click('#relay-submit');
      const refused = await until(page, 'the form shows why a bad target is refused', async () => {
        const msg = await text('#relay-message');
        return { done: !!msg && msg.startsWith('422'), message: msg };
      });
      await page.fill('#relay-target', relayTarget);
      await page.click('#relay-submit');
      const made = await until(page, 'the form says the relay was created', async () => {
        const msg = await text('#relay-message');
        const m = /relay #(\d+) created/.exec(msg || '');
        return { done: !!m, message: msg, id: m ? Number(m[1]) : null };
      });
      relayId = made.id;
      const live = await until(page, `relay #${relayId} goes live and sends frames`, async () => {
        const row = await relayRow(relayId);
        return { done: !!row && row[3].startsWith('live') && Number(row[5]) > 0, row };
      });
      const relayed = await until(page, `${relayStream} (the relay's destination) is listed`, async () => {
        const row = await streamRow(relayStream);
        return { done: !!row && row[1].includes('avc1'), row };
      });
      return { refused: refused.message, id: relayId, row: live.row, relayed_row: relayed.row };
    });

    await step('links', async () => {
      const hrefs = await page.evaluate(n => {
        const tr = Array.from(document.querySelectorAll('#streams tbody tr')).find(r => r.dataset.stream === n);
        const links = tr ? Array.from(tr.querySelectorAll('a')).map(a => [a.textContent, a.href]) : [];
        links.push(['OpenAPI', document.getElementById('openapi-link').href]);
        links.push(['player HLS', document.getElementById('hls-link').href]);
        links.push(['player DASH', document.getElementById('dash-link').href]);
        return links;
      }, stream);
      const checked = [];
      for (const [label, href] of hrefs) {
        const headers = href.includes('/api/') && !noToken ? { Authorization: `Bearer ${token}` } : {};
        const res = await page.request.get(href, { headers, timeout: 10000 });
        checked.push({ label, href, status: res.status(), type: res.headers()['content-type'] || null });
      }
      if (checked.length < 5 || checked.some(c => c.status !== 200)) {
        throw new StepFailed(`links: ${JSON.stringify(checked)}`);
      }
      // With a token, a click on the OpenAPI link must still show the document.
      let openapiTab = null;
      if (!noToken) {
        const [tab] = await Promise.all([ctx.waitForEvent('page', { timeout: 15000 }), page.click('#openapi-link')]);
        const shown = await until(tab, 'the OpenAPI document opens in a tab', async () => {
          const body = await tab.evaluate(() => document.body ? document.body.innerText : '').catch(() => '');
          return { done: tab.url().startsWith('blob:') && body.includes('"openapi"') && body.includes('/relays'), url: tab.url(), chars: body.length };
        });
        openapiTab = { url: shown.url, chars: shown.chars };
        await tab.close();
      }
      return { links: checked, openapi_tab: openapiTab };
    });

    await step('screenshot', async () => {
      fs.mkdirSync(path.dirname(path.resolve(shot)), { recursive: true });
      await page.screenshot({ path: shot, fullPage: true, timeout: 15000 });
      return { path: path.resolve(shot), bytes: fs.statSync(shot).size };
    });

    await step('relay_stop', async () => {
      await page.click(`#relays tbody tr[data-relay-id="${relayId}"] button.stop`);
      await until(page, `relay #${relayId} leaves the table`, async () => {
        const row = await relayRow(relayId);
        return { done: row === null, row };
      });
      await until(page, `${relayStream} leaves the stream list`, async () => {
        const row = await streamRow(relayStream);
        return { done: row === null, row };
      });
      const v = await page.evaluate(() => document.getElementById('video').currentTime);
      return { current_time_after: v };
    });

    const sourceUrl = process.env.CONSOLE_SOURCE_URL;
    if (sourceUrl) {
      const pulled = `${stream}-pulled`;
      let sourceId = null;
      await step('source_create', async () => {
        await page.fill('#source-stream', pulled);
        await page.fill('#source-url', 'ftp://example.invalid/x');
        await page.click('#source-submit');
        const refused = await until(page, 'the form shows why a bad URL is refused', async () => {
          const msg = await text('#source-message');
          return { done: !!msg && msg.startsWith('422'), message: msg };
        });
        await page.fill('#source-url', sourceUrl);
        await page.click('#source-submit');
        const made = await until(page, 'the form says the source was created', async () => {
          const msg = await text('#source-message');
          const m = /source #(\d+) created/.exec(msg || '');
          return { done: !!m, message: msg, id: m ? Number(m[1]) : null };
        });
        sourceId = made.id;
        const live = await until(page, `source #${sourceId} goes live with frames`, async () => {
          const row = await sourceRow(sourceId);
          return { done: !!row && row[3].startsWith('live') && Number(row[5]) > 0, row };
        });
        const listed = await until(page, `${pulled} (the pulled stream) is listed`, async () => {
          const row = await streamRow(pulled);
          return { done: !!row && row[1].includes('avc1'), row };
        });
        return { refused: refused.message, id: sourceId, row: live.row, stream_row: listed.row };
      });
      await step('source_stop', async () => {
        await page.click(`#sources tbody tr[data-source-id="${sourceId}"] button.stop`);
        await until(page, `source #${sourceId} leaves the table`, async () => {
          const row = await sourceRow(sourceId);
          return { done: row === null, row };
        });
        await until(page, `${pulled} leaves the stream list`, async () => {
          const row = await streamRow(pulled);
          return { done: row === null, row };
        });
        return {};
      });
    }
  } catch (e) {
    if (!(e instanceof StepFailed) && !report.failed_step) report.errors.push(`harness: ${e.message.split('\n')[0]}`);
    if (!report.steps.screenshot) {
      try { await page.screenshot({ path: shot, fullPage: true, timeout: 10000 }); } catch (_) { /* best effort */ }
    }
    return finish(1);
  }
  report.ok = report.errors.length === 0 && report.blocked.length === 0;
  if (!report.ok) report.failed_step = report.failed_step || 'page errors or blocked requests';
  return finish(report.ok ? 0 : 1);
}

main().catch(e => finish(2, `harness failure: ${e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e}`));
