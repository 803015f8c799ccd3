#!/usr/bin/env python3
"""Per-node gossip bandwidth against N, and a model of it for N = 1000.

    python3 bench/gossip_model.py [bench/out/gossip-<time>.json]   (default: the newest)

The model follows the protocol (docs/protocol.md, section 6). Per exchange
period P the hub sends every other member a request carrying the full digest
(about d bytes per member) and relays every record update it has not yet
seen the peer hold; each record changes about f times per second. So, in
frame bytes per second:

    hub out      H(N) = c2 * N*(N-1) + c1 * (N-1)      c2 ~ d/P + f*R, c1 ~ per-exchange overhead
    mean node    M(N) = m1 * N + m0                    (the hub's N^2 spread over N nodes, plus
                                                        every node answering with its own record)

The coefficients are fitted on the two smallest measured N, the largest N is
then predicted and compared with its measurement (the check), and the final
coefficients (fitted on all points, least squares) give N = 1000.
"""

import glob
import json
import os
import sys

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "out")


def lstsq(rows, ys):
    """Least squares for y = sum(x_i * k_i), two unknowns."""
    a11 = sum(r[0] * r[0] for r in rows)
    a12 = sum(r[0] * r[1] for r in rows)
    a22 = sum(r[1] * r[1] for r in rows)
    b1 = sum(r[0] * y for r, y in zip(rows, ys))
    b2 = sum(r[1] * y for r, y in zip(rows, ys))
    det = a11 * a22 - a12 * a12
    return ((b1 * a22 - b2 * a12) / det, (a11 * b2 - a12 * b1) / det)


def hub_x(n):
    return (n * (n - 1), n - 1)


def mean_x(n):
    return (n, 1)


def points(res, window):
    pts = []
    for r in res["results"]:
        w = r[window]
        dt = w["seconds"]
        per = w["per_node"]
        hub = next(p for p in per if p["node"] == r["hub"])
        outs = [p["bytes_out"] / dt for p in per]
        non = [p["bytes_out"] / dt for p in per if p["node"] != r["hub"]]
        pts.append({
            "n": r["n"],
            "hub_out": hub["bytes_out"] / dt,
            "hub_in": hub["bytes_in"] / dt,
            "nonhub_out": sum(non) / len(non),
            "mean_out": sum(outs) / len(outs),
            "wire_mean": w["wire_bytes"] / dt / r["n"],
        })
    return sorted(pts, key=lambda p: p["n"])


def fmt_bytes(b):
    for unit, k in (("MiB/s", 1 << 20), ("KiB/s", 1 << 10)):
        if b >= k:
            return f"{b / k:.1f} {unit}"
    return f"{b:.0f} B/s"


def report(res):
    lines = []
    for window in ("idle", "load"):
        pts = points(res, window)
        if len(pts) < 3:
            lines.append(f"{window}: need 3 sizes, have {len(pts)}")
            continue
        lines.append(f"\n{window} window (frame bytes; the hub is the node that relays):\n")
        lines.append("| N | hub out | non-hub out (mean) | all nodes out (mean) | wire, all layers (mean) |")
        lines.append("|---|---|---|---|---|")
        for p in pts:
            lines.append(f"| {p['n']} | {fmt_bytes(p['hub_out'])} | {fmt_bytes(p['nonhub_out'])} | "
                         f"{fmt_bytes(p['mean_out'])} | {fmt_bytes(p['wire_mean'])} |")
        lines.append("")
        lines.append("| quantity | fit on N | predicted N=%d | measured | error | fit on all: coefficients | N = 1000 |"
                     % pts[-1]["n"])
        lines.append("|---|---|---|---|---|---|---|")
        for key, fx, label, names in (
                ("hub_out", hub_x, "hub out", ("c2", "c1")),
                ("mean_out", mean_x, "mean node out", ("m1", "m0")),
                ("wire_mean", mean_x, "mean node wire", ("m1", "m0"))):
            k = lstsq([fx(p["n"]) for p in pts[:2]], [p[key] for p in pts[:2]])
            x = fx(pts[-1]["n"])
            pred = k[0] * x[0] + k[1] * x[1]
            meas = pts[-1][key]
            kall = lstsq([fx(p["n"]) for p in pts], [p[key] for p in pts])
            x1k = fx(1000)
            big = kall[0] * x1k[0] + kall[1] * x1k[1]
            lines.append(f"| {label} | {pts[0]['n']}, {pts[1]['n']} | {fmt_bytes(pred)} | "
                         f"{fmt_bytes(meas)} | {(pred - meas) / meas * 100:+.0f}% | "
                         f"{names[0]}={kall[0]:.1f} B/s, {names[1]}={kall[1]:.1f} B/s | "
                         f"{fmt_bytes(big)} |")
    return "\n".join(lines)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else max(glob.glob(os.path.join(OUT, "gossip-2*.json")),
                                                       key=os.path.getmtime)
    res = json.load(open(path))
    print(f"model from {path}")
    print(report(res))


if __name__ == "__main__":
    main()
