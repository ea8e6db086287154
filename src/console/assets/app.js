// The console page: live streams (with their recordings), a player for live
// streams and recordings on demand, recordings, relays, pulled sources. Everything comes from
// this server's REST API (/api/v1, with the API token when one is set) and
// its media routes. Text from the server (stream keys come from publishers)
// only ever goes into textContent, never into HTML.
'use strict';

(function () {
  const API = '/api/v1';
  const REFRESH_MS = 2000;
  const TOKEN_KEY = 'castgate.apiToken';
  const $ = id => document.getElementById(id);

  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  let player = null;
  let playing = null; // the stream the player shows
  let playingRecording = null; // or the recording (its id)
  let timer = null;

  class ApiError extends Error {
    constructor(status, message) {
      super(`${status}: ${message}`);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(API + path, init);
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!res.ok) {
      throw new ApiError(res.status, (data && data.error) || text.trim() || res.statusText);
    }
    return data;
  }

  /**
   * `app/key…` as a URL path on this server: each segment escaped, slashes
   * kept, empty segments dropped (two leading slashes would name another host).
   */
  function streamPath(stream) {
    return '/' + stream.split('/').filter(s => s.length > 0).map(encodeURIComponent).join('/');
  }

  function hlsUrl(stream) { return `${streamPath(stream)}/index.m3u8`; }
  function dashUrl(stream) { return `${streamPath(stream)}/manifest.mpd`; }

  function kbps(v) { return v == null ? '–' : `${Math.round(v)} kb/s`; }

  function bytes(n) {
    if (n < 1024) return `${n} B`;
    const units = ['KiB', 'MiB', 'GiB', 'TiB'];
    let v = n / 1024;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return `${v.toFixed(1)} ${units[i]}`;
  }

  function duration(secs) {
    const s = Math.floor(secs);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const pad = x => String(x).padStart(2, '0');
    return h > 0 ? `${h}h ${pad(m)}m ${pad(s % 60)}s` : `${m}m ${pad(s % 60)}s`;
  }

  /** `m:ss.s` (with hours when there are some), for the player's clock. */
  function clock(secs) {
    if (!Number.isFinite(secs)) return '–';
    const s = Math.max(0, secs);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = (s % 60).toFixed(1).padStart(4, '0');
    return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
  }

  function videoText(v) {
    if (!v) return '–';
    const fps = v.fps == null ? '' : ` ${v.fps} fps`;
    return `${v.codec} (${v.codec_string}) ${v.width}×${v.height}${fps} ${kbps(v.bitrate_kbps)}`;
  }

  /**
   * Players over every protocol, then the protocols that have some:
   * `4 (rtmp 1, hls 2, dash 1)`. HLS and DASH counts are lower bounds
   * (`≥`) when the server's viewer tracking reached its cap.
   */
  function playersText(s) {
    const by = s.players_by_protocol || {};
    const more = s.players_capped ? '≥' : '';
    const parts = Object.keys(by).filter(p => by[p] > 0)
      .map(p => `${p} ${p === 'rtmp' ? '' : more}${by[p]}`);
    const total = `${more}${s.players}`;
    return parts.length ? `${total} (${parts.join(', ')})` : total;
  }

  function audioText(a) {
    if (!a) return '–';
    return `${a.codec} (${a.codec_string}) ${a.sample_rate / 1000} kHz ${a.channels} ch ${kbps(a.bitrate_kbps)}`;
  }

  function el(tag, props, children) {
    const e = document.createElement(tag);
    Object.assign(e, props || {});
    for (const c of children || []) e.append(c);
    return e;
  }

  /**
   * Updates `tbody` in place to one row per item, keyed by `key(item)`:
   * rows (and their buttons) survive refreshes, so a click is never lost
   * to a redraw. `cells(item)` gives strings or nodes, one per column.
   */
  function sync(tbody, items, key, attr, cells) {
    const rows = new Map();
    for (const tr of Array.from(tbody.rows)) rows.set(tr.dataset[attr], tr);
    const seen = new Set();
    for (const item of items) {
      const k = String(key(item));
      seen.add(k);
      let tr = rows.get(k);
      if (!tr) {
        tr = document.createElement('tr');
        tr.dataset[attr] = k;
      }
      const values = cells(item);
      while (tr.cells.length < values.length) tr.insertCell();
      values.forEach((v, i) => {
        const td = tr.cells[i];
        if (typeof v === 'string') {
          if (td.textContent !== v || td.children.length > 0) td.textContent = v;
        } else if (td.firstChild !== v) {
          td.replaceChildren(v);
        }
      });
      tbody.append(tr); // keeps the server's order
    }
    for (const [k, tr] of rows) if (!seen.has(k)) tr.remove();
  }

  // Buttons and state cells are made once per row and reused.
  const buttons = new Map();
  function button(id, label, cls, onclick) {
    let b = buttons.get(id);
    if (!b) {
      b = el('button', { type: 'button', className: cls, textContent: label });
      b.addEventListener('click', onclick);
      buttons.set(id, b);
    }
    return b;
  }

  function links(stream) {
    return el('span', { className: 'links' }, [
      el('a', { href: hlsUrl(stream), textContent: 'HLS' }),
      ' ',
      el('a', { href: dashUrl(stream), textContent: 'DASH' }),
    ]);
  }

  function renderStreams(list) {
    const streams = list.streams;
    $('stream-count').textContent = `(${streams.length})`;
    $('no-streams').hidden = streams.length > 0;
    sync($('streams').tBodies[0], streams, s => s.stream, 'stream', s => {
      const watch = button(`watch:${s.stream}`, 'Watch', 'watch', () => watchStream(s.stream));
      return [
        s.stream,
        videoText(s.video),
        audioText(s.audio),
        kbps(s.bitrate_kbps),
        duration(s.uptime_secs),
        s.protocol ? `${s.publisher} (${s.protocol})` : s.publisher,
        playersText(s),
        s.relays.length ? s.relays.map(id => `#${id}`).join(' ') : '–',
        streamActions(s.stream, watch),
        recordingCell(s),
      ];
    });
    for (const k of Array.from(recordCells.keys())) {
      if (!streams.some(s => s.stream === k)) recordCells.delete(k);
    }
    const options = $('live-streams');
    options.replaceChildren(...streams.map(s => el('option', { value: s.stream })));
  }

  const actionCells = new Map();
  function streamActions(stream, watch) {
    let span = actionCells.get(stream);
    if (!span) {
      span = el('span', {}, [watch, ' ', links(stream)]);
      actionCells.set(stream, span);
    }
    return span;
  }

  /**
   * A stream's recording state and its Start/Stop button, made once per
   * stream and updated in place (so a click is never lost to a redraw).
   */
  const recordCells = new Map();
  function recordingCell(s) {
    let c = recordCells.get(s.stream);
    if (!c) {
      const text = el('span', { className: 'rec-state' });
      const btn = el('button', { type: 'button', className: 'record' });
      btn.addEventListener('click', () => toggleRecording(s.stream, btn));
      c = { node: el('span', {}, [text, ' ', btn]), text, btn };
      recordCells.set(s.stream, c);
    }
    const r = s.recording;
    const t = r
      ? `● recording${r.started_by === 'rule' ? ' (rule)' : ''} · ${r.path || 'starting…'} · ${bytes(r.bytes)}`
      : 'not recording';
    if (c.text.textContent !== t) c.text.textContent = t;
    const label = r ? 'Stop recording' : 'Start recording';
    if (c.btn.textContent !== label && !c.btn.disabled) c.btn.textContent = label;
    c.btn.dataset.recording = r ? '1' : '';
    c.node.className = r ? 'recording' : '';
    return c.node;
  }

  async function toggleRecording(stream, btn) {
    const msg = $('streams-message');
    msg.textContent = '';
    const stop = btn.dataset.recording === '1';
    btn.disabled = true;
    try {
      await api(stop ? 'DELETE' : 'POST', `/streams${streamPath(stream)}/recording`);
      btn.textContent = stop ? 'Start recording' : 'Stop recording';
      btn.dataset.recording = stop ? '' : '1';
    } catch (e) {
      msg.textContent = `${stop ? 'stop' : 'start'} recording ${stream}: ${explain(e)}`;
    } finally {
      btn.disabled = false;
    }
    refresh();
  }

  /** A path on this server from the API, or null (never another origin). */
  function localPath(u) {
    // Not a network-path reference (two slashes: another origin), nor a backslash, which browsers read as one.
    return typeof u === 'string' && u.charAt(0) === '/' && u.charAt(1) !== '/' && !u.includes('\\') ? u : null;
  }

  function renderRecordings(list) {
    const section = $('recordings-section');
    section.hidden = list === null; // recordings are not offered
    if (list === null) return;
    const recs = list.recordings;
    $('recording-count').textContent = `(${recs.length}${list.truncated ? '+' : ''})`;
    $('no-recordings').hidden = recs.length > 0;
    const tbody = $('recordings').tBodies[0];
    sync(tbody, recs, r => r.id, 'recordingId', r => {
      const play = button(`play-rec:${r.id}`, 'Play', 'play', () => playRecording(r.id));
      const del = button(`delete-rec:${r.id}`, 'Delete', 'delete', () => deleteRecording(r.id));
      play.disabled = r.state === 'recording' || !localPath(r.urls && r.urls.hls);
      play.title = r.state === 'recording' ? 'being written: stop it first' : '';
      return [
        r.stream || '–',
        new Date(r.start).toLocaleString(),
        duration(r.duration),
        bytes(r.size),
        r.state,
        r.files.join(' '),
        recordingActions(r.id, play, del),
      ];
    });
    for (const tr of Array.from(tbody.rows)) {
      const r = recs.find(x => x.id === tr.dataset.recordingId);
      if (r) tr.className = `rec-${r.state}`;
    }
    recordings = new Map(recs.map(r => [r.id, r]));
  }
  let recordings = new Map();

  const recordingActionCells = new Map();
  function recordingActions(id, play, del) {
    let span = recordingActionCells.get(id);
    if (!span) {
      span = el('span', {}, [play, del]);
      recordingActionCells.set(id, span);
    }
    return span;
  }

  function playRecording(id) {
    const r = recordings.get(id);
    const url = r && localPath(r.urls.hls);
    if (!url) return;
    closePlayer();
    playingRecording = id;
    $('player-section').hidden = false;
    $('player-kind').textContent = 'Recording';
    $('player-stream').textContent = `${r.stream || r.vod_path} · ${new Date(r.start).toLocaleString()} · ${duration(r.duration)}`;
    $('hls-link').href = url;
    $('dash-link').href = localPath(r.urls.dash) || '';
    startPlayer(url);
  }

  async function deleteRecording(id) {
    const r = recordings.get(id);
    const msg = $('recordings-message');
    msg.textContent = '';
    const name = r ? r.files.join(', ') : id;
    if (!window.confirm(`Delete the recording ${name}? Its files are removed from disk.`)) return;
    try {
      await api('DELETE', `/recordings/${encodeURIComponent(id)}`);
      buttons.delete(`play-rec:${id}`);
      buttons.delete(`delete-rec:${id}`);
      recordingActionCells.delete(id);
      if (playingRecording === id) closePlayer();
      msg.textContent = `deleted ${name}`;
      msg.className = 'ok';
    } catch (e) {
      msg.textContent = `delete ${name}: ${explain(e)}`;
      msg.className = 'error';
    }
    refresh();
  }

  function relayState(r) {
    let s = r.state;
    if (r.state === 'backoff' && r.next_attempt_secs != null) s += ` (retry in ${r.next_attempt_secs.toFixed(1)} s)`;
    else s += ` (${duration(r.state_secs)})`;
    return s;
  }

  function renderRelays(list) {
    const relays = list.relays;
    $('relay-count').textContent = `(${relays.length})`;
    const tbody = $('relays').tBodies[0];
    sync(tbody, relays, r => r.id, 'relayId', r => [
      String(r.id),
      r.stream,
      r.target,
      relayState(r),
      bytes(r.bytes_sent),
      String(r.frames_sent),
      String(r.frames_dropped),
      String(r.reconnects),
      r.last_error || '–',
      button(`stop:${r.id}`, 'Stop', 'stop', () => stopRelay(r.id)),
    ]);
    for (const tr of Array.from(tbody.rows)) {
      const r = relays.find(x => String(x.id) === tr.dataset.relayId);
      if (r) tr.className = `state-${r.state}`;
    }
  }

  function renderSources(list) {
    const sources = list.sources;
    $('source-count').textContent = `(${sources.length})`;
    const tbody = $('sources').tBodies[0];
    sync(tbody, sources, r => r.id, 'sourceId', r => [
      String(r.id),
      r.stream,
      r.url,
      relayState(r) + (r.on_demand ? ' · on demand' : ''),
      bytes(r.bytes),
      String(r.frames),
      String(r.reconnects),
      r.last_error || '–',
      button(`stop-source:${r.id}`, 'Stop', 'stop', () => stopSource(r.id)),
    ]);
    for (const tr of Array.from(tbody.rows)) {
      const r = sources.find(x => String(x.id) === tr.dataset.sourceId);
      if (r) tr.className = `state-${r.state}`;
    }
  }

  function mbps(v) { return v > 0 ? `${v.toFixed(2)} Mb/s` : '–'; }

  /** SRT connections: publishers (castgate receives) and players (it sends). */
  function renderSrt(list) {
    const sessions = list.sessions;
    $('srt-count').textContent = `(${sessions.length})`;
    $('no-srt').hidden = sessions.length > 0;
    sync($('srt').tBodies[0], sessions, s => s.id, 'srtId', s => {
      const publish = s.mode === 'publish';
      return [
        s.peer,
        s.stream,
        publish ? 'publish' : 'play',
        duration(s.age_secs),
        `${s.rtt_ms.toFixed(1)} ms`,
        mbps(s.rate_mbps),
        mbps(s.bandwidth_mbps),
        String(publish ? s.packets_received_lost : s.packets_lost),
        String(publish ? s.packets_received_retransmitted : s.packets_retransmitted),
        publish ? String(s.packets_received_dropped) : '–',
      ];
    });
  }

  /**
   * Cluster mode: the live nodes with their load, and every stream of the
   * cluster with the node that owns it (any node plays any of them).
   */
  function renderCluster(c) {
    const section = $('cluster-section');
    section.hidden = !c || !c.enabled;
    if (section.hidden) return;
    if (c.error) {
      $('cluster-message').textContent = c.error;
      return;
    }
    $('cluster-message').textContent = '';
    $('cluster-node').textContent = `(this node: ${c.node})`;
    $('node-count').textContent = `(${c.nodes.length})`;
    $('cluster-stream-count').textContent = `(${c.streams.length})`;
    sync($('cluster-nodes').tBodies[0], c.nodes, n => n.node, 'node', n => [
      n.node === c.node ? `${n.node} (this node)` : n.node,
      n.http || '–',
      n.rtmp || '–',
      String(n.streams),
      String(n.viewers),
    ]);
    sync($('cluster-streams').tBodies[0], c.streams, s => s.stream, 'clusterStream', s => [
      s.stream,
      s.here ? `${s.node} (this node)` : s.node,
      String(s.token),
      links(s.stream),
    ]);
  }

  function setStatus(text, isError) {
    const s = $('status');
    s.textContent = text;
    s.className = isError ? 'error' : '';
  }

  function explain(e) {
    if (e instanceof ApiError && e.status === 401) {
      return `API: ${e.message}. Enter the API token (api.token) above.`;
    }
    if (e instanceof ApiError && e.status === 403) {
      return `API: ${e.message}. Set api.token (CASTGATE__API__TOKEN) and enter it above to use the console from another machine.`;
    }
    return `API: ${e.message || e}`;
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      // A server without recordings answers 404 there: the section hides.
      const recs = api('GET', '/recordings').catch(e => {
        if (e instanceof ApiError && e.status === 404) return null;
        throw e;
      });
      // Redis not answering is said in the cluster section, not as a failure.
      const cluster = api('GET', '/cluster').catch(e => {
        if (e instanceof ApiError && e.status === 503) return { enabled: true, error: e.message };
        throw e;
      });
      const [streams, relays, srt, sources, recList, clusterView] = await Promise.all(
        [api('GET', '/streams'), api('GET', '/relays'), api('GET', '/srt'), api('GET', '/sources'), recs, cluster]);
      renderCluster(clusterView);
      renderStreams(streams);
      renderRecordings(recList);
      renderRelays(relays);
      renderSrt(srt);
      renderSources(sources);
      const recText = recList ? ` · ${recList.recordings.length} recordings` : '';
      setStatus(`updated ${new Date().toLocaleTimeString()} · ${streams.streams.length} live${recText} · ${relays.relays.length} relays · ${srt.sessions.length} SRT · ${sources.sources.length} sources`, false);
    } catch (e) {
      setStatus(explain(e), true);
    }
    showPlayerState();
    timer = setTimeout(refresh, REFRESH_MS);
  }

  function showPlayerState() {
    if (!player) return;
    const st = player.status;
    // On demand, the player's "ended" means every segment is loaded, not
    // that playback is over.
    const state = st.vod && st.state === 'ended' ? 'all loaded' : st.state;
    const t = st.error ? `error: ${st.error}` : `${state}${st.vod ? ' · on demand' : ''} · ${st.segments} segments`;
    const e = $('player-state');
    e.textContent = t;
    e.className = st.error ? 'error' : '';
  }

  /** The player's clock: where it is and, on demand, of how long. */
  function showPlayerTime() {
    if (!player) return;
    const v = $('video');
    $('player-time').textContent = Number.isFinite(v.duration)
      ? `${clock(v.currentTime)} / ${clock(v.duration)}`
      : clock(v.currentTime);
  }

  function startPlayer(url) {
    player = new window.CastgatePlayer($('video'), url);
    player.onstatus = showPlayerState;
    window.castgatePlayer = player;
    player.start();
    showPlayerTime();
  }

  function watchStream(stream) {
    closePlayer();
    playing = stream;
    $('player-section').hidden = false;
    $('player-kind').textContent = 'Live';
    $('player-stream').textContent = stream;
    $('hls-link').href = hlsUrl(stream);
    $('dash-link').href = dashUrl(stream);
    if (!$('relay-stream').value) $('relay-stream').value = stream;
    startPlayer(hlsUrl(stream));
  }

  function closePlayer() {
    if (player) player.destroy();
    player = null;
    playing = null;
    playingRecording = null;
    window.castgatePlayer = null;
    $('player-section').hidden = true;
    $('player-time').textContent = '';
    $('player-state').textContent = '';
  }

  async function stopRelay(id) {
    try {
      await api('DELETE', `/relays/${id}`);
      buttons.delete(`stop:${id}`);
    } catch (e) {
      setStatus(explain(e), true);
    }
    refresh();
  }

  async function addRelay(ev) {
    ev.preventDefault();
    const err = $('relay-message');
    err.textContent = '';
    try {
      const r = await api('POST', '/relays', {
        stream: $('relay-stream').value.trim(),
        target: $('relay-target').value.trim(),
      });
      $('relay-target').value = '';
      err.textContent = `relay #${r.id} created`;
      err.className = 'ok';
    } catch (e) {
      err.textContent = e instanceof ApiError && e.status >= 401 && e.status <= 403 ? explain(e) : e.message;
      err.className = 'error';
    }
    refresh();
  }

  async function stopSource(id) {
    try {
      await api('DELETE', `/sources/${id}`);
      buttons.delete(`stop-source:${id}`);
    } catch (e) {
      setStatus(explain(e), true);
    }
    refresh();
  }

  async function addSource(ev) {
    ev.preventDefault();
    const err = $('source-message');
    err.textContent = '';
    try {
      const r = await api('POST', '/sources', {
        stream: $('source-stream').value.trim(),
        url: $('source-url').value.trim(),
        on_demand: $('source-on-demand').checked,
      });
      $('source-url').value = '';
      err.textContent = `source #${r.id} created`;
      err.className = 'ok';
    } catch (e) {
      err.textContent = e instanceof ApiError && e.status >= 401 && e.status <= 403 ? explain(e) : e.message;
      err.className = 'error';
    }
    refresh();
  }

  /**
   * The OpenAPI link: a plain link works without a token (loopback); with
   * one, a browser navigation would get 401, so the page fetches the
   * document with the token and opens it in a new tab.
   */
  function openApiDocument(ev) {
    if (!token) return;
    ev.preventDefault();
    // Opened now, within the click, so no popup blocker stops it.
    const w = window.open('', '_blank');
    api('GET', '/openapi.json').then(doc => {
      const blob = new Blob([JSON.stringify(doc, null, 2)], { type: 'application/json' });
      if (w) w.location.href = URL.createObjectURL(blob);
    }).catch(e => {
      if (w) w.close();
      setStatus(explain(e), true);
    });
  }

  function init() {
    $('token').value = token;
    $('token-form').addEventListener('submit', ev => {
      ev.preventDefault();
      token = $('token').value.trim();
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
      refresh();
    });
    $('relay-form').addEventListener('submit', addRelay);
    $('source-form').addEventListener('submit', addSource);
    $('player-close').addEventListener('click', closePlayer);
    for (const ev of ['timeupdate', 'durationchange', 'seeked', 'emptied']) {
      $('video').addEventListener(ev, showPlayerTime);
    }
    $('openapi-link').addEventListener('click', openApiDocument);
    refresh();
  }

  // For the end-to-end test and the curious.
  window.castgateConsole = {
    refresh, watch: watchStream, play: playRecording,
    playing: () => playing, playingRecording: () => playingRecording,
  };
  init();
})();
