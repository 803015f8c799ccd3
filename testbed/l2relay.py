#!/usr/bin/env python3
"""Userspace link impairment for kernels without sch_netem.

Forwards Ethernet frames between pairs of interfaces (AF_PACKET, with the
virtio-net header so GSO/checksum-offloaded frames survive the trip) and, while
impairment is on, delays and drops the frames going in the host-to-bridge
direction of every pair, like `tc qdisc add dev eth0 root netem delay D loss L`
on each host's interface. Frames the other way pass unchanged.

It starts paused (dropping everything) so that the test bed can splice it in
while the hosts still sit on the bridge: SIGHUP starts forwarding, SIGUSR1
turns the impairment on (delay and loss read from --control FILE,
"DELAY_MS LOSS", if given, else --delay-ms and --loss), SIGUSR2 turns it off;
SIGTERM exits.

    l2relay.py [--delay-ms 100] [--loss 0.1] [--control FILE] HOSTIF:BRIDGEIF [...]

Run it in the switch namespace of the test bed; it only touches the
interfaces it is given.
"""
import argparse
import heapq
import random
import select
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_OUTGOING = 4


def open_if(name):
    # Protocol 0 receives nothing until bind() names the interface, so no
    # frame of another interface slips into the queue in between.
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.bind((name, ETH_P_ALL))
    s.setblocking(False)
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay-ms", type=float, default=100.0)
    ap.add_argument("--loss", type=float, default=0.1)
    ap.add_argument("--control", help="file with 'DELAY_MS LOSS', read on SIGUSR1")
    ap.add_argument("pairs", nargs="+")
    a = ap.parse_args()

    state = {"forward": False, "on": False, "delay": a.delay_ms / 1000.0, "loss": a.loss}

    def forward(*_):
        state["forward"] = True

    stats = {"fwd": 0, "dropped": 0, "delayed": 0, "send_errors": 0}

    def on(*_):
        if a.control:
            with open(a.control) as f:
                d, l = f.read().split()
            state["delay"], state["loss"] = float(d) / 1000.0, float(l)
        state["on"] = True

    def off(*_):
        state["on"] = False

    def stop(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGHUP, forward)
    signal.signal(signal.SIGUSR1, on)
    signal.signal(signal.SIGUSR2, off)
    signal.signal(signal.SIGTERM, stop)

    route = {}
    socks = {}
    for p in a.pairs:
        host_if, br_if = p.split(":")
        h, b = open_if(host_if), open_if(br_if)
        route[h.fileno()] = (b, True)
        route[b.fileno()] = (h, False)
        socks[h.fileno()] = h
        socks[b.fileno()] = b
    ep = select.epoll()
    for fd in socks:
        ep.register(fd, select.EPOLLIN)

    queue = []  # (due, seq, socket, frame)
    seq = 0

    def send(out, frame):
        try:
            out.send(frame)
            stats["fwd"] += 1
        except OSError:
            stats["send_errors"] += 1

    print("l2relay: ready", flush=True)
    while True:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, frame = heapq.heappop(queue)
            send(out, frame)
        timeout = max(0.0, queue[0][0] - now) if queue else 1.0
        try:
            events = ep.poll(timeout)
        except InterruptedError:
            continue
        for fd, _ in events:
            s = socks[fd]
            out, impaired = route[fd]
            while True:
                try:
                    frame, addr = s.recvfrom(70000)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    # ENETDOWN and friends while a link is cut: nothing to read.
                    break
                if addr[2] == PACKET_OUTGOING or not state["forward"]:
                    continue
                if impaired and state["on"]:
                    if random.random() < state["loss"]:
                        stats["dropped"] += 1
                        continue
                    seq += 1
                    stats["delayed"] += 1
                    heapq.heappush(queue, (time.monotonic() + state["delay"], seq, out, frame))
                else:
                    send(out, frame)


if __name__ == "__main__":
    try:
        main()
    except (SystemExit, KeyboardInterrupt):
        pass
    sys.exit(0)
