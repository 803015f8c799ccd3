"""Shared helpers of the coolmesh benchmark scripts (standard library only).

Agents run as real `coolmesh agent` processes, each with its own state
directory, HTTP port and libp2p port, inside a network namespace the calling
script created (see bench/netns.sh), so nothing touches the host's network.
"""

import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-token-0123456789abcdef0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def coolmesh_bin():
    tgt = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.environ.get("COOLMESH_BIN", os.path.join(tgt, "release", "coolmesh"))


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = open("/proc/loadavg").read().split()[:3]
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "loadavg_at_start": " ".join(load),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "git": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip(),
    }


# ---- HTTP (tiny HTTP/1.1 client; one request per connection unless kept) ----

def http(port, method, path, token=None, timeout=5.0, host="127.0.0.1"):
    """Returns (status, body bytes)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  f"Content-Length: 0\r\n{auth}\r\n".encode())
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    try:
        status = int(head[9:12])
    except ValueError:
        status = 0
    return status, body


def get_json(port, path, timeout=5.0):
    st, body = http(port, "GET", path, timeout=timeout)
    if st != 200:
        raise RuntimeError(f"GET {path} on {port}: {st} {body[:200]!r}")
    return json.loads(body)


def metrics(port):
    st, body = http(port, "GET", "/metrics")
    if st != 200:
        raise RuntimeError(f"/metrics on {port}: {st}")
    return body.decode()


def metric_sum(text, name, **labels):
    """Sum of every series of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)', line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
    return total


# ---- processes ----

def proc_cpu_seconds(pid):
    """utime + stime of a process, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kib(pid):
    """(VmRSS, VmHWM) in KiB."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


class AgentNode:
    """One `coolmesh agent` with its own directory, HTTP and libp2p ports."""

    def __init__(self, base_dir, index, http_port, p2p_port, seeds, extra="", cluster="bench",
                 readings=None, power_targets=(), power_interval=None, power_timeout=None):
        self.index = index
        self.name = f"n{index:02d}"
        self.dir = os.path.join(base_dir, self.name)
        self.http_port = http_port
        self.p2p_port = p2p_port
        self.proc = None
        self.peer_id = None
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "token"), "w") as f:
            f.write(TOKEN)
        if readings is None:
            readings = [{"chip": "inlet", "sensor": "t", "celsius": 30, "critical_celsius": 80}]
        with open(os.path.join(self.dir, "t.json"), "w") as f:
            json.dump(readings, f)
        peers = ", ".join(f'"/ip4/127.0.0.1/tcp/{p}"' for p in seeds)
        power = ""
        if power_targets:
            power = "[power]\ntargets = [" + ", ".join(f'"{t}"' for t in power_targets) + "]\n"
            if power_interval:
                power += f'interval = "{power_interval}"\n'
            if power_timeout:
                power += f'timeout = "{power_timeout}"\n'
        # Bench clusters live on loopback in a private namespace: no key
        # unless the caller passes one (the agent refuses to start a
        # cluster with neither psk_file nor insecure_no_psk).
        insecure = "" if "psk_file" in extra else "insecure_no_psk = true"
        cfg = f"""[node]
name = "{self.name}"
state_dir = "{self.dir}/state"
[http]
listen_address = "127.0.0.1:{http_port}"
token_file = "{self.dir}/token"
[sensors]
sources = ["file"]
file = "{self.dir}/t.json"
{power}[shutdown]
grace = "30m"
dry_run = true
[cluster]
name = "{cluster}"
listen = ["/ip4/127.0.0.1/tcp/{p2p_port}"]
peers = [{peers}]
mdns = false
{insecure}
{extra}
"""
        self.config = os.path.join(self.dir, "coolmesh.toml")
        with open(self.config, "w") as f:
            f.write(cfg)

    def start(self):
        self.log = open(os.path.join(self.dir, "agent.log"), "ab")
        self.proc = subprocess.Popen(
            [coolmesh_bin(), "agent", "--config", self.config, "--log.level", "warn"],
            stdout=self.log, stderr=self.log, start_new_session=True)
        return self

    def wait_http(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.dir}/agent.log")
            try:
                st = get_json(self.http_port, "/v1/state", timeout=2)
                self.peer_id = st.get("peer_id")
                return
            except (OSError, RuntimeError, ValueError):
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} never served HTTP")

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def hub_of(nodes):
    """The hub rule of docs/protocol.md: the smallest PeerId as base58 text."""
    live = [n for n in nodes if n.peer_id and n.proc and n.proc.poll() is None]
    return min(live, key=lambda n: n.peer_id) if live else None


def alive_count(node):
    peers = get_json(node.http_port, "/v1/peers")
    return sum(1 for p in peers if p.get("liveness") == "alive")


def wait_converged(nodes, timeout):
    """Until every node sees every other node alive. Returns seconds taken."""
    t0 = time.monotonic()
    n = len(nodes)
    while time.monotonic() - t0 < timeout:
        try:
            if all(alive_count(x) == n - 1 for x in nodes):
                return time.monotonic() - t0
        except (OSError, RuntimeError, ValueError):
            pass
        time.sleep(0.5)
    counts = []
    for x in nodes:
        try:
            counts.append(alive_count(x))
        except Exception:  # noqa: BLE001
            counts.append(-1)
    raise RuntimeError(f"no convergence in {timeout}s: alive counts {counts}")


def pct(values, p):
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def md_table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


# ---- network namespaces ----

def run_in_netns(name, script, argv, delay_ms=0, delayed_ports="20000:20999"):
    """Create namespace `name` (loopback only), optionally with a per-packet
    one-way delay on TCP packets to or from `delayed_ports` (bench/netdelay.py
    behind an NFQUEUE rule), run `python3 script argv` inside it, tear it all
    down. Returns the inner exit code. Must run as root."""
    if os.environ.get("CM_NETNS") == name:
        raise RuntimeError("already inside")
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "netns", "add", name], check=True)
    nd = None
    try:
        ex = ["ip", "netns", "exec", name]
        subprocess.run(ex + ["ip", "link", "set", "lo", "up"], check=True)
        # Ephemeral ports stay clear of the agents' fixed ports.
        subprocess.run(ex + ["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=40000 60999"],
                       check=True)
        if delay_ms:
            subprocess.run(ex + ["iptables", "-A", "OUTPUT", "-p", "tcp", "-m", "multiport",
                                 "--ports", delayed_ports, "-j", "NFQUEUE", "--queue-num", "0"],
                           check=True)
            ready = f"/tmp/{name}.netdelay.ready"
            if os.path.exists(ready):
                os.unlink(ready)
            # Real-time priority: on a loaded 2-core machine a normal process
            # would add scheduling delay on top of the emulated one.
            nd = subprocess.Popen(ex + ["chrt", "-f", "20", sys.executable,
                                        os.path.join(ROOT, "bench", "netdelay.py"),
                                        "--delay-ms", str(delay_ms), "--ready-file", ready],
                                  stderr=open(os.path.join(
                                      os.environ.get("BENCH_OUT", "/tmp"),
                                      f"{name}.netdelay-{time.strftime('%Y%m%d-%H%M%S')}.log"), "w"))
            for _ in range(100):
                if os.path.exists(ready):
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError("netdelay did not start")
        env = dict(os.environ, CM_NETNS=name)
        return subprocess.run(ex + [sys.executable, script] + argv, env=env).returncode
    finally:
        if nd:
            nd.send_signal(signal.SIGTERM)
            try:
                nd.wait(timeout=5)
            except subprocess.TimeoutExpired:
                nd.kill()
        # Anything still running in the namespace was started by this run.
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                              text=True).stdout.split()
        for p in pids:
            try:
                os.kill(int(p), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def iptables_queue_bytes():
    """(packets, bytes) counted by the NFQUEUE rule of the current namespace."""
    out = subprocess.run(["iptables", "-L", "OUTPUT", "-v", "-x", "-n"], capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        if "NFQUEUE" in line:
            f = line.split()
            return int(f[0]), int(f[1])
    return 0, 0
