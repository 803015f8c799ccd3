#!/usr/bin/env python3
"""A stand-in for a device on raw mains power: accepts TCP connections on
127.0.0.1:PORT and closes them at once. The agents probe it with
`tcp://127.0.0.1:PORT`; killing this process is "the power went out".

Usage: tcp_target.py PORT
"""
import socket
import signal
import sys


def main():
    # SIGTERM is the normal way the test stops this: exit 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    port = int(sys.argv[1])
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    try:
        while True:
            conn, _ = s.accept()
            conn.close()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
