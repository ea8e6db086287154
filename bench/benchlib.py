"""Shared pieces of the bench/ scripts: the cached fixture, building
castgate, starting castgate and nginx-rtmp on free loopback ports, and
sampling a process tree's CPU and RSS from /proc.

Standard library only: the scripts run on a fresh Debian machine."""

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "castgate-bench"
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def prioritise():
    """Runs this script and everything it starts (servers, load generator)
    ahead of other work on a shared machine, when allowed to (root). Both
    servers get the same treatment, so ratios stay fair."""
    try:
        os.nice(-10)
    except OSError:
        return False
    # With autogroup scheduling, nice only ranks processes within a session;
    # the session's own weight is set here.
    try:
        Path("/proc/self/autogroup").write_text("-10")
    except OSError:
        pass
    return True


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def need(*tools):
    """Fails with the apt-get line when a tool is missing."""
    missing = [t for t in tools if shutil.which(t) is None and not Path(t).exists()]
    if missing:
        die(f"missing {', '.join(missing)}: apt-get install ffmpeg nginx libnginx-mod-rtmp wrk rtmpdump")


def fixture(seconds=20):
    """720p30 H.264 High with B-frames + AAC at ~3 Mbps, made once."""
    path = CACHE / f"720p30-3mbps-{seconds}s.flv"
    if path.exists():
        return path
    need("ffmpeg")
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.flv")
    print(f"making the fixture {path} (once)", flush=True)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=1000:beep_factor=4:sample_rate=48000",
         "-map", "0:v", "-map", "1:a", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-bf", "2",
         "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
         "-b:v", "3000k", "-maxrate", "3000k", "-bufsize", "6000k",
         "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2", "-f", "flv", str(tmp)],
        check=True)
    tmp.rename(path)
    return path


def build():
    """Builds the release binaries; returns (castgate, castgate-load)."""
    subprocess.run(["cargo", "build", "--release", "--bins", "-q"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
    return target / "castgate", target / "castgate-load"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            die(f"{what} exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    die(f"{what} did not listen on {port} within {timeout} s")


def children(pid):
    """pid and all its descendants (nginx master + workers)."""
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for c in f.read().split():
                    out += children(int(c))
    except OSError:
        pass
    return out


def cpu_rss(pid):
    """(CPU seconds, RSS bytes) of pid and its descendants."""
    cpu = rss = 0
    for p in children(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / TICK
            with open(f"/proc/{p}/statm") as f:
                rss += int(f.read().split()[1]) * PAGE
        except (OSError, IndexError):
            pass
    return cpu, rss


class Sampler(threading.Thread):
    """Samples (time, cpu_s, rss) of a process tree every `every` seconds."""

    def __init__(self, pid, every=1.0):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples = pid, every, []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            self.samples.append((time.time(), *cpu_rss(self.pid)))
            self.stopping.wait(self.every)

    def stop(self):
        self.stopping.set()
        self.join()
        self.samples.append((time.time(), *cpu_rss(self.pid)))

    def window(self, start, end):
        return [s for s in self.samples if start <= s[0] <= end]


class GaugeSampler(threading.Thread):
    """Samples (time, value) of `read()` every `every` seconds (None skipped)."""

    def __init__(self, read, every=1.0):
        super().__init__(daemon=True)
        self.read, self.every, self.samples = read, every, []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            v = self.read()
            if v is not None:
                self.samples.append((time.time(), v))
            self.stopping.wait(self.every)

    def stop(self):
        self.stopping.set()
        self.join()

    def window(self, start, end):
        return [s for s in self.samples if start <= s[0] <= end]


def stop(proc):
    """Ends proc (if it runs): SIGTERM, then SIGKILL after 10 s."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Server:
    """A server under test: started in a temp dir, stopped on exit."""

    def __init__(self, name):
        self.name = name
        self.dir = Path(tempfile.mkdtemp(prefix=f"castgate-bench-{name}-"))
        self.rtmp = free_port()
        self.http = free_port()
        self.proc = None

    def stop(self):
        stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class Castgate(Server):
    def __init__(self, binary, env=None, args=(), rtmp_host="127.0.0.1"):
        super().__init__("castgate")
        e = dict(os.environ)
        e.update({
            "CASTGATE__RTMP__LISTEN": f"{rtmp_host}:{self.rtmp}",
            "CASTGATE__HTTP__LISTEN": f"127.0.0.1:{self.http}",
            "CASTGATE__SRT__LISTEN": "127.0.0.1:0",
            "CASTGATE__RTMP__MAX_CONNECTIONS": "20000",
            # Every load comes from 127.0.0.1: the per-address caps (64 by
            # default) would refuse all but the first publishers.
            "CASTGATE__RTMP__MAX_CONNECTIONS_PER_IP": "20000",
            "CASTGATE__HTTP__MAX_CONNECTIONS_PER_IP": "20000",
            "CASTGATE__LOG__LEVEL": "warn",
        })
        e.update(env or {})
        self.log = open(self.dir / "castgate.log", "w")
        self.proc = subprocess.Popen([str(binary), *args], env=e, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.rtmp, self.proc, "castgate")
        wait_port(self.http, self.proc, "castgate")

    def metric(self, name):
        """A series of /metrics (name with its labels), or None."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=5) as r:
                page = r.read().decode()
        except OSError:
            return None
        for line in page.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def playlist(self):
        return f"http://127.0.0.1:{self.http}/live/{{name}}/video.m3u8"

    def player(self):
        return f"http://127.0.0.1:{self.http}/live/{{name}}/index.m3u8"


NGINX_RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"


class Nginx(Server):
    """nginx with Debian's libnginx-mod-rtmp: one worker (what nginx-rtmp
    live needs without rtmp_auto_push), HLS with 2 s fragments and a 12 s
    playlist (castgate's window) to a tmpfs when there is one."""

    def __init__(self):
        super().__init__("nginx")
        need("nginx", NGINX_RTMP_MODULE)
        shm = Path("/dev/shm")
        self.hls = Path(tempfile.mkdtemp(prefix="nginx-hls-", dir=shm if shm.is_dir() else None))
        (self.dir / "html").mkdir()
        # Workers run as the invoking user, so they can read and write the
        # temp dirs (as root, nginx would otherwise switch to www-data).
        user = "user root;" if os.geteuid() == 0 else ""
        conf = f"""
{user}
load_module {NGINX_RTMP_MODULE};
daemon off;
worker_processes 1;
worker_rlimit_nofile 20000;
error_log {self.dir}/error.log warn;
pid {self.dir}/nginx.pid;
events {{ worker_connections 16000; }}
rtmp {{
  server {{
    listen 127.0.0.1:{self.rtmp};
    chunk_size 4096;
    application live {{
      live on;
      hls on;
      hls_path {self.hls};
      hls_fragment 2s;
      hls_playlist_length 12s;
    }}
  }}
}}
http {{
  access_log off;
  client_body_temp_path {self.dir}/body;
  proxy_temp_path {self.dir}/proxy;
  fastcgi_temp_path {self.dir}/fastcgi;
  uwsgi_temp_path {self.dir}/uwsgi;
  scgi_temp_path {self.dir}/scgi;
  types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; video/iso.segment m4s; }}
  server {{
    listen 127.0.0.1:{self.http};
    location /hls/ {{ alias {self.hls}/; add_header Cache-Control no-cache; }}
    location / {{ root {self.dir}/html; }}
  }}
}}
"""
        (self.dir / "nginx.conf").write_text(conf)
        self.log = open(self.dir / "stdout.log", "w")
        self.proc = subprocess.Popen(
            ["nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.rtmp, self.proc, "nginx")
        wait_port(self.http, self.proc, "nginx")

    def playlist(self):
        return f"http://127.0.0.1:{self.http}/hls/{{name}}.m3u8"

    def player(self):
        return self.playlist()

    def stop(self):
        super().stop()
        shutil.rmtree(self.hls, ignore_errors=True)


def run_load(load_bin, server, flv, publishers, duration, players=0, extra=()):
    """Runs castgate-load against server; returns its JSON report."""
    out = server.dir / f"load-{publishers}.json"
    threads = "1" if publishers <= 200 else "2"
    cmd = [str(load_bin), "--rtmp", f"rtmp://127.0.0.1:{server.rtmp}/live", "--file", str(flv),
           "--publishers", str(publishers), "--duration", str(duration), "--threads", threads,
           "--playlist", server.playlist(), "--watch-interval", "2", "--json", str(out), *extra]
    if players:
        cmd += ["--players", str(players), "--player-url", server.player()]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if not out.exists():
        die(f"castgate-load failed against {server.name}: {r.stdout}{r.stderr}")
    import json
    report = json.loads(out.read_text())
    report["stdout"] = r.stdout
    return report


def cpu_model():
    """The CPU as /proc/cpuinfo names it, with its nominal clock in MHz
    (None where the kernel does not say), and the cores the OS sees."""
    model, mhz = "unknown CPU", None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name" and model == "unknown CPU":
                model = value
            elif key == "cpu MHz" and mhz is None:
                mhz = float(value)
    except (OSError, ValueError):
        pass
    return model, mhz, os.cpu_count()


def median(values):
    v = sorted(values)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


class NginxRtmp(Server):
    """nginx (Debian's RTMP module) running the given rtmp `application`
    blocks, one worker, with `rtmp_stat` on its HTTP port (/stat) to check
    what each application received. Used by the fan-out case: as the
    pushing server under test and as the sink of every push."""

    def __init__(self, name, apps):
        super().__init__(name)
        need("nginx", NGINX_RTMP_MODULE)
        user = "user root;" if os.geteuid() == 0 else ""
        conf = f"""
{user}
load_module {NGINX_RTMP_MODULE};
daemon off;
worker_processes 1;
error_log {self.dir}/error.log warn;
pid {self.dir}/nginx.pid;
events {{ worker_connections 4096; }}
rtmp {{
  server {{
    listen 127.0.0.1:{self.rtmp};
    chunk_size 4096;
{apps}
  }}
}}
http {{
  access_log off;
  client_body_temp_path {self.dir}/body;
  proxy_temp_path {self.dir}/proxy;
  fastcgi_temp_path {self.dir}/fastcgi;
  uwsgi_temp_path {self.dir}/uwsgi;
  scgi_temp_path {self.dir}/scgi;
  server {{
    listen 127.0.0.1:{self.http};
    location /stat {{ rtmp_stat all; }}
  }}
}}
"""
        (self.dir / "nginx.conf").write_text(conf)
        self.log = open(self.dir / "stdout.log", "w")
        self.proc = subprocess.Popen(
            ["nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.rtmp, self.proc, f"nginx ({name})")
        wait_port(self.http, self.proc, f"nginx ({name})")

    def bytes_in(self):
        """{(application, stream): bytes received} from rtmp_stat."""
        import urllib.request
        import xml.etree.ElementTree as ET
        root = ET.fromstring(urllib.request.urlopen(f"http://127.0.0.1:{self.http}/stat").read())
        out = {}
        for app in root.iter("application"):
            for stream in app.iter("stream"):
                out[(app.findtext("name"), stream.findtext("name"))] = int(stream.findtext("bytes_in") or 0)
        return out


def flv_reader(proc, stamps, started):
    """Reads an FLV stream from proc.stdout; appends (arrival, hash) per video tag."""
    buf = bytearray()
    header = False
    fd = proc.stdout.fileno()
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:
            return
        if not chunk:
            return
        now = time.monotonic()
        buf += chunk
        if not header:
            if len(buf) < 13:
                continue
            if buf[:3] != b"FLV":
                return
            del buf[:13]
            header = True
        while len(buf) >= 11:
            size = int.from_bytes(buf[1:4], "big")
            if len(buf) < 11 + size + 4:
                break
            if buf[0] == 9 and size > 5 and now - started > 0:
                # Skip FrameType/codec, AVCPacketType and the composition time.
                stamps.append((now, hashlib.blake2b(bytes(buf[11 + 5:11 + size]), digest_size=12).digest()))
            del buf[:11 + size + 4]


def flv_player(url, log, started, prefix=()):
    """rtmpdump playing url into a pipe (unbuffered through stdbuf when there
    is one; `prefix` runs it elsewhere, e.g. `ip netns exec NS`), and a
    thread that appends (arrival, hash) per video frame to the returned
    list: (process, thread, stamps)."""
    unbuf = ["stdbuf", "-o0"] if shutil.which("stdbuf") else []
    proc = subprocess.Popen([*prefix, *unbuf, "rtmpdump", "-v", "-r", url, "-o", "-"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=open(log, "w"))
    stamps = []
    thread = threading.Thread(target=flv_reader, args=(proc, stamps, started), daemon=True)
    thread.start()
    return proc, thread, stamps


def pct(values, q):
    """The q-th percentile of values (nearest rank)."""
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q / 100 * len(v) + 0.5)) - 1))]
