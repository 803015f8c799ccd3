#!/usr/bin/env python3
"""Per-packet one-way delay, the way `tc qdisc ... netem delay D` applies it,
for kernels without sch_netem (this machine's kernel has none).

Run inside a network namespace, as root. An iptables rule sends the packets
to delay to an NFQUEUE; this program holds each one for DELAY and then lets
it continue, in arrival order. Netem on `lo` delays each packet once, on
egress; the rule below sits in OUTPUT, which loopback packets also cross
exactly once, so the effect is the same: one-way delay D, round trip 2D.

Only metadata crosses into user space (NFQNL_COPY_META); verdicts go out in
batches (NFQNL_MSG_VERDICT_BATCH accepts every queued packet up to an id),
which keeps one Python process far below one core at thousands of
packets per second.

    netdelay.py --queue 0 --delay-ms 100 [--ready-file F]

Stops on SIGTERM/SIGINT, accepting what is still queued. Prints a summary
(packets, max queue depth, verdict lateness) on exit.
"""

import argparse
import os
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5


def attr(kind, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * ((4 - n % 4) % 4)


def msg(msg_type, queue, attrs, flags=NLM_F_REQUEST, seq=0):
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attrs)
    t = (NFNL_SUBSYS_QUEUE << 8) | msg_type
    return struct.pack("=IHHII", 16 + len(body), t, flags, seq, 0) + body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queue", type=int, default=0)
    ap.add_argument("--delay-ms", type=float, default=100.0)
    ap.add_argument("--ready-file")
    a = ap.parse_args()
    delay = a.delay_ms / 1000.0

    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    s.bind((0, 0))
    for opt in (33, 32):  # SO_RCVBUFFORCE, SO_SNDBUFFORCE (root)
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, 64 << 20)
        except OSError:
            pass
    seq = 1

    def config(attrs):
        nonlocal seq
        s.send(msg(NFQNL_MSG_CONFIG, a.queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq))
        seq += 1
        data = s.recv(65536)
        _, t, _, _, _ = struct.unpack_from("=IHHII", data)
        if t == NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", data, 16)
            if err != 0:
                sys.exit(f"netdelay: nfqueue config failed: {os.strerror(-err)}")

    config([attr(NFQA_CFG_CMD, struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, 0))])
    config([attr(NFQA_CFG_PARAMS, struct.pack(">IB", 0, NFQNL_COPY_META))])
    config([attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", 100000))])

    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if a.ready_file:
        open(a.ready_file, "w").write(str(os.getpid()))

    pending = []  # (due, id) in arrival order
    head = 0
    packets = 0
    max_depth = 0
    late_max = 0.0
    late_sum = 0.0
    batches = 0

    def accept_upto(pid):
        s.send(msg(NFQNL_MSG_VERDICT_BATCH, a.queue,
                   [attr(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, pid))]))

    while not stop:
        now = time.monotonic()
        timeout = 0.5
        if head < len(pending):
            timeout = max(0.0, pending[head][0] - now)
        try:
            r, _, _ = select.select([s], [], [], timeout)
        except InterruptedError:
            continue
        if r:
            # Drain everything that is ready without blocking.
            while True:
                try:
                    data = s.recv(1 << 20, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                except InterruptedError:
                    continue
                t_rx = time.monotonic()
                off = 0
                while off + 16 <= len(data):
                    ln, t, _, _, _ = struct.unpack_from("=IHHII", data, off)
                    if ln < 16:
                        break
                    if t == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                        p = off + 16 + 4  # nlmsghdr + nfgenmsg
                        end = off + ln
                        while p + 4 <= end:
                            alen, atype = struct.unpack_from("=HH", data, p)
                            if alen < 4:
                                break
                            if (atype & 0x7FFF) == NFQA_PACKET_HDR:
                                (pid,) = struct.unpack_from(">I", data, p + 4)
                                pending.append((t_rx + delay, pid))
                                packets += 1
                                break
                            p += (alen + 3) & ~3
                    off += (ln + 3) & ~3
        now = time.monotonic()
        last = None
        while head < len(pending) and pending[head][0] <= now:
            late = now - pending[head][0]
            late_sum += late
            late_max = max(late_max, late)
            last = pending[head][1]
            head += 1
        if last is not None:
            accept_upto(last)
            batches += 1
        max_depth = max(max_depth, len(pending) - head)
        if head > 4096:
            del pending[:head]
            head = 0
    if head < len(pending):
        accept_upto(pending[-1][1])
    mean = late_sum / packets if packets else 0.0
    print(f"netdelay: packets={packets} batches={batches} max_depth={max_depth} "
          f"late_mean_ms={mean * 1000:.2f} late_max_ms={late_max * 1000:.2f}",
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
