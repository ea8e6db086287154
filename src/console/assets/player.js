// castgate's own player: reads a stream's HLS playlists (fMP4/CMAF),
// fetches the init segments and media segments they list, and appends them
// to Media Source Extensions source buffers, one per track. No third-party
// code: this is what lets a plain `cargo run --release` serve a console that
// plays.
//
// Live and on demand: a title whose playlists say EXT-X-PLAYLIST-TYPE:VOD
// (with EXT-X-ENDLIST) gets its whole duration at once (so the video
// element's seek bar spans it), is fetched no further than
// CastgatePlayer.vodBufferAheadS ahead of the playhead, and a seek to a time
// that is not buffered fetches from the segment holding it (the playlist's
// EXTINF durations place each segment).
//
// Usage: const p = new CastgatePlayer(videoElement, '/live/KEY/index.m3u8');
//        p.start(); ... p.destroy();
// p.status: {state, error, segments, tracks, vod, duration, seeks} for the
// page (and the tests); `seeks` counts seeks that had to fetch.
'use strict';

(function () {
  // Start this many segments back from the live end (a few seconds of
  // buffer against a slow segment fetch).
  const LIVE_EDGE_SEGMENTS = 3;
  // Media kept behind the playhead; older data is removed from the buffers.
  const KEEP_BEHIND_S = 30;
  // Further behind the live end than this, playback jumps forward.
  const MAX_LATENCY_S = 30;
  const VIDEO_CODECS = ['avc1', 'avc3', 'hvc1', 'hev1', 'av01', 'vp09'];
  // Network errors and 5xx in a row (each retried after a playlist pause)
  // before the player gives up.
  const MAX_TRANSIENT_ERRORS = 10;
  // On demand, a gap in the buffer ahead of the playhead shorter than this
  // is jumped (a track that starts a little late); a longer one is a seek
  // being served.
  const VOD_MAX_GAP_S = 1;

  /** `KEY=VALUE,KEY="VALUE, with commas"` of an HLS tag. */
  function attributes(s) {
    const out = {};
    const re = /([A-Z0-9-]+)=("[^"]*"|[^,]*)/g;
    let m;
    while ((m = re.exec(s)) !== null) {
      out[m[1]] = m[2].startsWith('"') ? m[2].slice(1, -1) : m[2];
    }
    return out;
  }

  function lines(text) {
    return text.split(/\r?\n/).map(l => l.trim()).filter(l => l.length > 0);
  }

  /** The variants of a multivariant playlist and its audio renditions. */
  function parseMultivariant(text, base) {
    const variants = [];
    const audio = {};
    let pending = null;
    for (const line of lines(text)) {
      if (line.startsWith('#EXT-X-STREAM-INF:')) {
        pending = attributes(line.slice(18));
      } else if (line.startsWith('#EXT-X-MEDIA:')) {
        const a = attributes(line.slice(13));
        if (a.TYPE === 'AUDIO' && a.URI && (!audio[a['GROUP-ID']] || a.DEFAULT === 'YES')) {
          audio[a['GROUP-ID']] = new URL(a.URI, base).href;
        }
      } else if (!line.startsWith('#') && pending) {
        variants.push({
          bandwidth: Number(pending.BANDWIDTH) || 0,
          codecs: (pending.CODECS || '').split(',').map(c => c.trim()).filter(Boolean),
          audioGroup: pending.AUDIO || null,
          uri: new URL(line, base).href,
        });
        pending = null;
      }
    }
    return { variants, audio };
  }

  /**
   * A media playlist: numbered segments, each with its init segment, its
   * duration and its start (the durations before it).
   */
  function parseMedia(text, base) {
    let sequence = 0;
    let target = 2;
    let ended = false;
    let vod = false;
    let map = null;
    let duration = 0;
    let start = 0;
    const segments = [];
    for (const line of lines(text)) {
      if (line.startsWith('#EXT-X-MEDIA-SEQUENCE:')) {
        sequence = Number(line.slice(22)) || 0;
      } else if (line.startsWith('#EXT-X-TARGETDURATION:')) {
        target = Number(line.slice(22)) || target;
      } else if (line.startsWith('#EXT-X-MAP:')) {
        const uri = attributes(line.slice(11)).URI;
        if (uri) map = new URL(uri, base).href;
      } else if (line.startsWith('#EXTINF:')) {
        duration = parseFloat(line.slice(8)) || 0;
      } else if (line === '#EXT-X-ENDLIST') {
        ended = true;
      } else if (line === '#EXT-X-PLAYLIST-TYPE:VOD') {
        vod = true;
      } else if (!line.startsWith('#')) {
        segments.push({ number: sequence + segments.length, uri: new URL(line, base).href, map, duration, start });
        start += duration;
      }
    }
    return { target, ended, vod: vod && ended, segments, total: start };
  }

  function sleep(ms, signal) {
    return new Promise(resolve => {
      const t = setTimeout(resolve, ms);
      signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  class HttpError extends Error {
    constructor(url, status) {
      super(`${status} for ${url}`);
      this.status = status;
    }
  }

  /** One track (video or audio): its playlist, its source buffer. */
  class Track {
    constructor(player, kind, playlist, mime) {
      this.player = player;
      this.kind = kind;
      this.playlist = playlist;
      this.mime = mime;
      this.buffer = null;
      this.next = null; // number of the next segment to append
      this.map = null; // init segment appended last
      this.ended = false;
      this.appended = 0;
      this.failures = 0; // transient errors in a row
      this.media = null; // the playlist last read
      this.seekGen = 0; // bumped by each seek that moves `next`
      this.wake = null; // ends an idle wait early (a seek)
    }

    /** The segment of the last playlist that holds media time `t`. */
    segmentAt(t) {
      const segs = this.media ? this.media.segments : [];
      if (segs.length === 0) return null;
      let found = segs[0];
      for (const s of segs) if (s.start <= t + 0.001) found = s;
      return found;
    }

    /** Whether the source buffer holds media time `t` (and a little after). */
    holds(t, end) {
      const b = this.buffer.buffered;
      for (let i = 0; i < b.length; i++) {
        if (b.start(i) <= t + 0.1 && b.end(i) >= (end === undefined ? t + 0.5 : end - 0.1)) return true;
      }
      return false;
    }

    /** Moves loading to the segment holding `t`; false if `t` is buffered. */
    seek(t) {
      if (this.holds(t)) return false;
      const seg = this.segmentAt(t);
      if (!seg) return false;
      this.next = seg.number;
      this.seekGen += 1;
      this.ended = false;
      if (this.wake) this.wake();
      return true;
    }

    /** Waits `ms` (forever without it), until a seek wakes it, or the end. */
    idle(ms) {
      const signal = this.player.abort.signal;
      return new Promise(resolve => {
        let t = null;
        const done = () => {
          clearTimeout(t);
          signal.removeEventListener('abort', done);
          if (this.wake === done) this.wake = null;
          resolve();
        };
        this.wake = done;
        if (ms) t = setTimeout(done, ms);
        signal.addEventListener('abort', done);
      });
    }

    /** Whether `e` is worth retrying (and counts it). */
    transient(e) {
      const retry = e instanceof TypeError || (e instanceof HttpError && e.status >= 500);
      if (!retry) return false;
      this.failures += 1;
      return this.failures <= MAX_TRANSIENT_ERRORS;
    }

    async load() {
      const text = await this.player.fetchText(this.playlist);
      return parseMedia(text, this.playlist);
    }

    async run(first) {
      const signal = this.player.abort.signal;
      const vod = this.player.vod;
      let media = first;
      while (!signal.aborted) {
        this.media = media;
        const segs = media.segments;
        if (segs.length > 0 && this.next < segs[0].number) {
          // Fell out of the window (a stall, a slow tab): go on from its start.
          this.next = segs[0].number;
        }
        let retry = false;
        while (!signal.aborted && segs.length > 0) {
          const seg = segs[this.next - segs[0].number];
          if (!seg) break;
          const gen = this.seekGen;
          if (vod && this.holds(seg.start, seg.start + seg.duration)) {
            // Buffered already (a seek back into what was loaded).
            this.next = seg.number + 1;
            continue;
          }
          if (vod && seg.start > this.player.video.currentTime + CastgatePlayer.vodBufferAheadS) {
            // Far enough ahead: wait for the playhead (or a seek).
            await this.idle(500);
            continue;
          }
          try {
            if (seg.map && seg.map !== this.map) {
              await this.append(await this.player.fetchBytes(seg.map));
              this.map = seg.map;
            }
            await this.append(await this.player.fetchBytes(seg.uri));
            this.appended += 1;
            this.failures = 0;
            this.player.segmentAppended();
          } catch (e) {
            // An expired segment (404) is skipped; a network error or 5xx
            // is retried after the pause; anything else stops.
            if (e instanceof HttpError && e.status === 404) {
              // skipped
            } else if (this.transient(e)) {
              retry = true;
              break;
            } else {
              throw e;
            }
          }
          // Unless a seek moved on meanwhile.
          if (gen === this.seekGen) this.next = seg.number + 1;
        }
        if (signal.aborted) return;
        if (!retry && media.ended && (segs.length === 0 || this.next > segs[segs.length - 1].number)) {
          if (!this.ended) {
            this.ended = true;
            this.player.trackEnded();
          }
          if (!vod) return;
          // On demand, a seek back starts loading again.
          await this.idle();
          continue;
        }
        await sleep(Math.min(2000, Math.max(500, media.target * 500)), signal);
        if (signal.aborted) return;
        try {
          media = await this.load();
          this.failures = 0;
        } catch (e) {
          // Keep the last playlist and try again after the pause.
          if (!this.transient(e)) throw e;
        }
      }
    }

    /** appendBuffer as a promise; on a full buffer, trims and retries once. */
    async append(bytes) {
      await this.player.trim(this);
      try {
        await this.appendOnce(bytes);
      } catch (e) {
        if (e && e.name === 'QuotaExceededError') {
          await this.player.trim(this, true);
          await this.appendOnce(bytes);
        } else {
          throw e;
        }
      }
    }

    appendOnce(bytes) {
      return this.whenIdle(() => this.buffer.appendBuffer(bytes));
    }

    remove(start, end) {
      return this.whenIdle(() => this.buffer.remove(start, end));
    }

    /** Runs `op` on the source buffer and resolves when it has finished. */
    whenIdle(op) {
      return new Promise((resolve, reject) => {
        const sb = this.buffer;
        const done = () => { sb.removeEventListener('updateend', done); sb.removeEventListener('error', fail); resolve(); };
        const fail = () => { sb.removeEventListener('updateend', done); sb.removeEventListener('error', fail); reject(new Error(`${this.kind} buffer error`)); };
        sb.addEventListener('updateend', done);
        sb.addEventListener('error', fail);
        try {
          op();
        } catch (e) {
          sb.removeEventListener('updateend', done);
          sb.removeEventListener('error', fail);
          reject(e);
        }
      });
    }
  }

  class CastgatePlayer {
    constructor(video, url) {
      this.video = video;
      this.url = new URL(url, window.location.href).href;
      this.abort = new AbortController();
      this.tracks = [];
      this.mediaSource = null;
      this.objectUrl = null;
      this.monitor = null;
      this.status = { state: 'loading', error: null, segments: 0, tracks: [], vod: false, duration: null, seeks: 0 };
      this.onstatus = null;
      this.vod = false;
    }

    setStatus(changes) {
      Object.assign(this.status, changes);
      if (this.onstatus) this.onstatus(this.status);
    }

    fail(e) {
      if (this.abort.signal.aborted) return;
      this.setStatus({ state: 'error', error: String((e && e.message) || e) });
      this.stopLoading();
    }

    async fetchResponse(url) {
      const res = await fetch(url, { signal: this.abort.signal, cache: 'no-cache' });
      if (!res.ok) throw new HttpError(url, res.status);
      return res;
    }

    async fetchText(url) {
      return (await this.fetchResponse(url)).text();
    }

    async fetchBytes(url) {
      return new Uint8Array(await (await this.fetchResponse(url)).arrayBuffer());
    }

    start() {
      this.run().catch(e => this.fail(e));
      return this;
    }

    async run() {
      if (typeof MediaSource === 'undefined') throw new Error('this browser has no Media Source Extensions');
      const { variants, audio } = parseMultivariant(await this.fetchText(this.url), this.url);
      if (variants.length === 0) throw new Error('no variant in the multivariant playlist');
      // The best variant this browser can decode.
      variants.sort((a, b) => b.bandwidth - a.bandwidth);
      let chosen = null;
      for (const v of variants) {
        const plan = this.plan(v, audio);
        if (plan.length > 0 && plan.every(t => MediaSource.isTypeSupported(t.mime))) {
          chosen = plan;
          break;
        }
      }
      if (!chosen) {
        throw new Error(`this browser cannot play ${variants.map(v => v.codecs.join(',')).join(' or ')}`);
      }
      // Start every track at the same segment number: a number covers the
      // same time in every track of a castgate stream.
      const firsts = await Promise.all(chosen.map(t => t.load()));
      const start = this.startNumber(firsts);
      this.tracks = chosen;
      this.vod = firsts.every(p => p.vod);
      const duration = this.vod ? Math.max(...firsts.map(p => p.total)) : null;
      this.setStatus({ tracks: chosen.map(t => t.mime), vod: this.vod, duration });
      await this.openMediaSource();
      for (const t of chosen) {
        t.buffer = this.mediaSource.addSourceBuffer(t.mime);
        t.next = start;
      }
      if (this.vod && duration > 0) {
        // The whole title at once: the seek bar spans it.
        this.mediaSource.duration = duration;
        this.onSeeking = () => this.seeking();
        this.video.addEventListener('seeking', this.onSeeking);
      }
      this.monitor = setInterval(() => this.watch(), 250);
      await Promise.all(chosen.map((t, i) => t.run(firsts[i])));
    }

    /** The tracks of variant `v`: video and audio, or one of them. */
    plan(v, audio) {
      const videoCodec = v.codecs.find(c => VIDEO_CODECS.includes(c.split('.')[0]));
      const audioCodec = v.codecs.find(c => !VIDEO_CODECS.includes(c.split('.')[0]));
      const tracks = [];
      if (videoCodec) {
        tracks.push(new Track(this, 'video', v.uri, `video/mp4; codecs="${videoCodec}"`));
        if (audioCodec && v.audioGroup && audio[v.audioGroup]) {
          tracks.push(new Track(this, 'audio', audio[v.audioGroup], `audio/mp4; codecs="${audioCodec}"`));
        }
      } else if (audioCodec) {
        tracks.push(new Track(this, 'audio', v.uri, `audio/mp4; codecs="${audioCodec}"`));
      }
      return tracks;
    }

    startNumber(playlists) {
      const live = playlists.filter(p => p.segments.length > 0);
      if (live.length === 0) return 0;
      const first = Math.max(...live.map(p => p.segments[0].number));
      if (live.every(p => p.ended)) return first;
      const last = Math.min(...live.map(p => p.segments[p.segments.length - 1].number));
      return Math.max(first, last - LIVE_EDGE_SEGMENTS + 1);
    }

    openMediaSource() {
      return new Promise((resolve, reject) => {
        this.mediaSource = new MediaSource();
        this.mediaSource.addEventListener('sourceopen', () => resolve(), { once: true });
        this.onVideoError = () => {
          const err = this.video.error;
          const e = new Error(`video element: ${err ? err.message || err.code : 'error'}`);
          reject(e);
          this.fail(e);
        };
        this.video.addEventListener('error', this.onVideoError);
        this.objectUrl = URL.createObjectURL(this.mediaSource);
        this.video.src = this.objectUrl;
      });
    }

    /** On demand: a seek to what is not buffered loads from there. */
    seeking() {
      const t = this.video.currentTime;
      let moved = false;
      for (const track of this.tracks) {
        if (track.buffer && track.seek(t)) moved = true;
      }
      if (moved) {
        const changes = { seeks: this.status.seeks + 1 };
        if (this.status.state === 'ended') changes.state = 'playing';
        this.setStatus(changes);
      }
    }

    segmentAppended() {
      this.setStatus({ segments: this.status.segments + 1 });
    }

    trackEnded() {
      if (!this.tracks.every(t => t.ended)) return;
      this.setStatus({ state: 'ended' });
      const ms = this.mediaSource;
      if (ms && ms.readyState === 'open' && this.tracks.every(t => !t.buffer.updating)) {
        try { ms.endOfStream(); } catch (_) { /* closed meanwhile */ }
      }
    }

    /** Drops what is far behind the playhead (all of it before `t - 10` s on `force`). */
    async trim(track, force) {
      const b = track.buffer.buffered;
      if (b.length === 0) return;
      const now = this.video.currentTime;
      const keep = force ? 10 : KEEP_BEHIND_S;
      if (now - b.start(0) > keep + 5) {
        await track.remove(0, Math.max(0, now - keep));
      }
    }

    /**
     * Four times a second: start at the first buffered media (a live stream
     * does not begin at 0), jump gaps (a publisher switch, a skipped
     * segment), stay near the live end, and keep playing.
     */
    watch() {
      const v = this.video;
      const b = v.buffered;
      if (b.length === 0) return;
      const t = v.currentTime;
      let inside = false;
      for (let i = 0; i < b.length; i++) {
        if (t >= b.start(i) && t < b.end(i) - 0.1) inside = true;
      }
      if (!inside) {
        for (let i = 0; i < b.length; i++) {
          if (b.start(i) > t - 0.1) {
            // On demand only a small gap: a larger one is a seek whose
            // segment is on its way.
            if (!this.vod || b.start(i) - t < VOD_MAX_GAP_S) v.currentTime = b.start(i) + 0.05;
            break;
          }
        }
      } else if (!this.vod && b.end(b.length - 1) - t > MAX_LATENCY_S) {
        v.currentTime = b.end(b.length - 1) - LIVE_EDGE_SEGMENTS * 2;
      }
      // Until it plays (after that, a pause is the user's).
      if (v.paused && this.status.state === 'loading') {
        v.play().catch(() => { /* autoplay refused: the controls are there */ });
      }
      if (this.status.state === 'loading' && t > 0 && !v.paused && v.readyState >= 3) {
        this.setStatus({ state: 'playing' });
      }
    }

    stopLoading() {
      this.abort.abort();
      if (this.monitor) clearInterval(this.monitor);
      this.monitor = null;
    }

    destroy() {
      this.stopLoading();
      if (this.onVideoError) this.video.removeEventListener('error', this.onVideoError);
      if (this.onSeeking) this.video.removeEventListener('seeking', this.onSeeking);
      this.video.removeAttribute('src');
      this.video.load();
      if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
      this.objectUrl = null;
    }
  }

  // Seconds of a title on demand fetched ahead of the playhead.
  CastgatePlayer.vodBufferAheadS = 30;
  window.CastgatePlayer = CastgatePlayer;
  // For unit checks of the parsers.
  CastgatePlayer.parseMultivariant = parseMultivariant;
  CastgatePlayer.parseMedia = parseMedia;
})();
