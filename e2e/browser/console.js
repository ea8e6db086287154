#!/usr/bin/env node
// usage: node console.js CONSOLE_URL TOKEN|- STREAM RELAY_TARGET RELAY_STREAM SCREENSHOT.png [reconnect]
//        node console.js --recordings CONSOLE_URL TOKEN|- STREAM SCREENSHOT.png
//        node console.js --cluster CONSOLE_URL TOKEN|- STREAM=NODE[,STREAM=NODE…] NODES SCREENSHOT.png
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
// With --recordings, steps 1 and 2, then recordings instead of 3 to 7: a recording of STREAM
// started, listed, stopped, played on demand with a seek, and deleted from the page (see
// recordingSteps below).
// With --cluster, step 1 and then the cluster view of a cluster node: the section shows this
// node's id, NODES live nodes with their URLs and load, and each STREAM with the NODE that owns
// it (the owner marked "(this node)" when it is the page's node); a screenshot.
// Prints ONE JSON line on stdout: {ok, failed_step, steps: {...}, errors, blocked, dialogs,
// token_in_urls (requests whose URL held the token: there must be none), ...}.
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

const recordingMode = process.argv[2] === '--recordings';
const clusterMode = process.argv[2] === '--cluster';
const args = process.argv.slice(recordingMode || clusterMode ? 3 : 2);
const [consoleUrl, token, stream] = args;
const [relayTarget, relayStream, shot, mode] = recordingMode ? [null, null, args[3], null]
  : clusterMode ? [null, args[3], args[4], null] : args.slice(3);
if (!consoleUrl || !token || !stream || !shot || (!recordingMode && (!relayTarget && !clusterMode || !relayStream))) {
  harnessFail('usage: node console.js CONSOLE_URL TOKEN STREAM RELAY_TARGET RELAY_STREAM SCREENSHOT.png [reconnect]\n'
    + '       node console.js --recordings CONSOLE_URL TOKEN STREAM SCREENSHOT.png');
}
const noToken = token === '-';
let origin;
try { origin = new URL(consoleUrl); } catch (e) { harnessFail(`bad URL ${consoleUrl}: ${e.message}`); }

const { chromium, executablePath } = findChromium(harnessFail);

let ctx = null;
let profile = null;
let failuresToInject = 0;
let failuresInjected = 0;
const report = { ok: false, failed_step: null, steps: {}, errors: [], console_errors: [], blocked: [], dialogs: [], token_in_urls: [] };

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

// With --recordings, after the token step:
//   record_start: "Start recording" on STREAM's row: the row says it records, with the file (an FLV
//     under the stream's name) and a growing byte count;
//   record_listed: the Recordings view lists it as "recording", its Play disabled; "Delete" (the
//     confirmation accepted) is refused by the API (409, being written) and the page shows why;
//   record_stop: after RECORD_SECS of recording, "Stop recording": the row says "not recording",
//     and the recording turns "complete" in the Recordings view with its duration;
//   vod_play: "Play" opens it in the console's player on demand (CastgatePlayer.vodBufferAheadS is
//     set to VOD_AHEAD_S first, so that later seek falls outside the buffer): it plays (currentTime
//     advances), the element's duration is the recording's, the clock shows "current / duration";
//   vod_seek: the page seeks the video element (as its seek bar does) to SEEK_BEFORE_END_S before
//     the end: where `seeked` landed, the first frame after it, playback going on from there;
//   screenshot;
//   vod_delete: "Delete" (confirmed) removes it: its row leaves the view, the player closes.
const RECORD_SECS = 12;
const VOD_AHEAD_S = 3;
const SEEK_BEFORE_END_S = 3.5;
const VOD_MIN_ADVANCE_S = 1.5;

/** Seconds from the console's `1h 02m 03s` / `2m 03s`. */
function secondsOf(text) {
  const m = /^(?:(\d+)h )?(\d+)m (\d+)s$/.exec(text || '');
  return m ? Number(m[1] || 0) * 3600 + Number(m[2]) * 60 + Number(m[3]) : NaN;
}

async function recordingSteps(page, { text, streamRow }) {
  const recordingRows = () => page.evaluate(() => Array.from(document.querySelectorAll('#recordings tbody tr'))
    .map(tr => ({
      id: tr.dataset.recordingId,
      cells: Array.from(tr.cells).map(c => c.textContent),
      playDisabled: !!(tr.querySelector('button.play') || {}).disabled,
    })));
  const mine = async () => (await recordingRows()).find(r => r.cells[0] === stream) || null;
  const video = () => page.evaluate(() => {
    const v = document.getElementById('video');
    const p = window.castgatePlayer;
    const b = v.buffered;
    return {
      currentTime: v.currentTime, duration: Number.isFinite(v.duration) ? v.duration : null,
      paused: v.paused, seeking: v.seeking, readyState: v.readyState,
      ranges: Array.from({ length: b.length }, (_, i) => [b.start(i), b.end(i)]),
      clock: document.getElementById('player-time').textContent,
      title: document.getElementById('player-stream').textContent,
      kind: document.getElementById('player-kind').textContent,
      hidden: document.getElementById('player-section').hidden,
      player: p ? JSON.parse(JSON.stringify(p.status)) : null,
    };
  });
  const playerError = v => {
    if (v.player && v.player.state === 'error') throw new StepFailed(`player error: ${v.player.error}`);
  };

  let started = 0;
  await step('record_start', async () => {
    const before = await streamRow(stream);
    if (!before || !before[9].startsWith('not recording')) throw new StepFailed(`not "not recording" before: ${JSON.stringify(before)}`);
    await page.click(`#streams tbody tr[data-stream="${stream}"] button.record`);
    started = Date.now();
    let firstBytes = null;
    const seen = await until(page, `${stream} shows its recording with a growing file`, async () => {
      const row = await streamRow(stream);
      const cell = row ? row[9] : null;
      const m = /^● recording · (\S+(?:\.flv|\/index\.m3u8)) · ([\d.]+) (B|KiB|MiB)/.exec(cell || '');
      if (m && firstBytes === null) firstBytes = cell;
      return { done: !!m && firstBytes !== cell, cell, path: m ? m[1] : null, first: firstBytes };
    });
    return { before: before[9], cell: seen.cell, first: seen.first, path: seen.path };
  });

  await step('record_listed', async () => {
    const listed = await until(page, 'the Recordings view lists it as being recorded', async () => {
      const r = await mine();
      return { done: !!r && r.cells[4] === 'recording', row: r };
    });
    // Deleting a recording being written: the API refuses, the page says why.
    await page.click(`#recordings tbody tr[data-recording-id="${listed.row.id}"] button.delete`);
    const refused = await until(page, 'the page shows why it cannot be deleted now', async () => {
      const msg = await text('#recordings-message');
      return { done: !!msg && msg.includes('409'), message: msg };
    });
    return { row: listed.row.cells, id: listed.row.id, play_disabled: listed.row.playDisabled, refused: refused.message };
  });

  let rec = null;
  await step('record_stop', async () => {
    await until(page, `${RECORD_SECS} s of recording`, async () => ({ done: Date.now() - started >= RECORD_SECS * 1000 }),
      RECORD_SECS * 1000 + 5000);
    await page.click(`#streams tbody tr[data-stream="${stream}"] button.record`);
    const stopped = await until(page, `${stream} says it does not record any more`, async () => {
      const row = await streamRow(stream);
      return { done: !!row && row[9].startsWith('not recording'), cell: row && row[9] };
    });
    const done = await until(page, 'the recording turns complete with its duration', async () => {
      const r = await mine();
      return { done: !!r && r.cells[4] === 'complete' && secondsOf(r.cells[2]) > 0, row: r };
    });
    rec = done.row;
    return {
      cell: stopped.cell, row: rec.cells, id: rec.id, duration_s: secondsOf(rec.cells[2]),
      play_disabled: rec.playDisabled, message: await text('#streams-message'),
    };
  });

  let playing = null;
  await step('vod_play', async () => {
    await page.evaluate(s => { window.CastgatePlayer.vodBufferAheadS = s; }, VOD_AHEAD_S);
    await page.click(`#recordings tbody tr[data-recording-id="${rec.id}"] button.play`);
    const first = await until(page, 'the recording starts playing on demand', async () => {
      const v = await video();
      playerError(v);
      return { done: !!v.player && v.player.vod && v.player.state !== 'loading' && v.currentTime > 0 && !v.paused, ...v };
    });
    const played = await until(page, `currentTime advances by ${VOD_MIN_ADVANCE_S} s`, async () => {
      const v = await video();
      playerError(v);
      return { done: v.currentTime - first.currentTime >= VOD_MIN_ADVANCE_S && v.clock.includes(' / '), ...v };
    });
    playing = played;
    return {
      start: first.currentTime, current_time: played.currentTime, duration: played.duration,
      clock: played.clock, title: played.title, kind: played.kind, player: played.player,
      hls_link: await page.evaluate(() => document.getElementById('hls-link').getAttribute('href')),
      dash_link: await page.evaluate(() => document.getElementById('dash-link').getAttribute('href')),
    };
  });

  await step('vod_seek', async () => {
    const target = Math.floor((playing.duration - SEEK_BEFORE_END_S) * 10) / 10;
    if (!(target > playing.currentTime + VOD_AHEAD_S + 1)) {
      throw new StepFailed(`the recording is too short to seek past the buffer: ${JSON.stringify(playing)}`);
    }
    const seek = await page.evaluate(t => new Promise(resolve => {
      const v = document.getElementById('video');
      const b = v.buffered;
      const before = Array.from({ length: b.length }, (_, i) => [b.start(i), b.end(i)]);
      const t0 = performance.now();
      const timer = setTimeout(() => resolve({ error: 'no seeked event within 20 s', before }), 20000);
      v.addEventListener('seeked', () => {
        clearTimeout(timer);
        const out = { landed: v.currentTime, ms: Math.round(performance.now() - t0), before, frame: null };
        const late = setTimeout(() => resolve(out), 5000);
        v.requestVideoFrameCallback((_, meta) => { clearTimeout(late); out.frame = meta.mediaTime; resolve(out); });
      }, { once: true });
      v.currentTime = t;
    }), target);
    if (seek.error) throw new StepFailed(`seek to ${target}: ${seek.error} (buffered ${JSON.stringify(seek.before)})`);
    const after = await until(page, 'playback goes on from where the seek landed', async () => {
      const v = await video();
      playerError(v);
      return { done: v.currentTime >= seek.landed + 1 || (v.duration && v.currentTime >= v.duration - 0.2), ...v };
    });
    return {
      target, landed: seek.landed, frame: seek.frame, seeked_ms: seek.ms, buffered_before: seek.before,
      current_time: after.currentTime, clock: after.clock, seeks: after.player && after.player.seeks,
    };
  });

  await step('screenshot', async () => {
    fs.mkdirSync(path.dirname(path.resolve(shot)), { recursive: true });
    await page.screenshot({ path: shot, fullPage: true, timeout: 15000 });
    return { path: path.resolve(shot), bytes: fs.statSync(shot).size };
  });

  await step('vod_delete', async () => {
    await page.click(`#recordings tbody tr[data-recording-id="${rec.id}"] button.delete`);
    const gone = await until(page, 'the recording leaves the Recordings view', async () => {
      const r = (await recordingRows()).find(x => x.id === rec.id) || null;
      return { done: r === null, row: r, message: await text('#recordings-message') };
    });
    const v = await video();
    if (!v.hidden) throw new StepFailed('the player still shows the deleted recording');
    return { message: gone.message, count: await text('#recording-count'), empty_shown: await page.evaluate(() => !document.getElementById('no-recordings').hidden) };
  });
}

/** --cluster: STREAM=NODE pairs in `stream`, the node count in `relayStream`. */
async function clusterSteps(page, { text }) {
  if (!noToken) {
    await page.fill('#token', token);
    await page.click('#token-save');
  }
  const want = Object.fromEntries(stream.split(',').map(p => p.split('=')));
  const nodes = Number(relayStream);
  await step('cluster', async () => {
    const seen = await until(page, `the cluster view lists ${nodes} nodes and ${stream}`, async () => {
      const rows = sel => page.evaluate(s => Array.from(document.querySelectorAll(s))
        .map(tr => Array.from(tr.cells).map(c => c.textContent)), sel);
      const hidden = await page.evaluate(() => document.getElementById('cluster-section').hidden);
      const nodeRows = await rows('#cluster-nodes tbody tr');
      const streamRows = await rows('#cluster-streams tbody tr');
      const owners = Object.fromEntries(streamRows.map(r => [r[0], r[1]]));
      const done = !hidden && nodeRows.length === nodes
        && Object.keys(want).every(k => (owners[k] || '').split(' ')[0] === want[k]);
      return { done, hidden, node: await text('#cluster-node'), nodes: nodeRows, streams: streamRows };
    });
    return seen;
  });
  await step('screenshot', async () => {
    await page.screenshot({ path: shot, fullPage: true, timeout: 10000 });
    return {};
  });
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
    // The token travels in a header only, never in a URL the page builds.
    if (!noToken && u.href.includes(token) && report.token_in_urls.length < 10) report.token_in_urls.push(u.href);
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
    if (m.type() === 'error' && report.console_errors.length < 40) report.console_errors.push(m.text().slice(0, 300));
  });
  page.on('pageerror', e => report.errors.push('page exception: ' + String(e.message).slice(0, 300)));
  // The operator says yes to every confirmation (a recording's deletion).
  page.on('dialog', d => {
    if (report.dialogs.length < 10) report.dialogs.push(d.message().slice(0, 300));
    d.accept().catch(() => {});
  });

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

  // The live stream, relay and source steps (the default mode).
  async function liveSteps() {
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
  }

  try {
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

    if (clusterMode) {
      await clusterSteps(page, { text });
      throw null;
    }

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

    if (recordingMode) {
      await recordingSteps(page, { text, streamRow });
    } else {
      await liveSteps();
    }
  } catch (e) {
    if (e === null) {
      // The cluster mode's end.
      report.ok = report.errors.length === 0 && report.blocked.length === 0;
      if (!report.ok) report.failed_step = report.failed_step || 'page errors or blocked requests';
      return finish(report.ok ? 0 : 1);
    }
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
