#!/usr/bin/env python3
"""A plain HTTP server (Python 3 standard library only) that baton can reload with no
request lost. It knows nothing about baton, only the conventions systemd set:

- its listening socket is inherited at fd 3 (LISTEN_FDS, LISTEN_PID): it never binds;
- it says READY=1 on NOTIFY_SOCKET once it serves, so baton knows when (no flag needed);
- on SIGTERM it drains: stops accepting (the socket stays open in baton and the next
  version), answers what is in flight with `Connection: close`, lets idle keep-alive
  connections end, and exits.

    baton start --listen 8080 -- python3 examples/python/server.py

Run alone (`python3 server.py`) it binds PORT (default 8080) itself.
"""
import os
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Seconds an idle keep-alive connection is kept, advertised to clients in `Keep-Alive`.
IDLE_TIMEOUT = 5
GENERATION = os.environ.get("BATON_GENERATION", "-")
draining = threading.Event()


def inherited_socket():
    """The listener systemd or baton passed at fd 3, as sd_listen_fds(3) checks it."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
        return None
    return socket.socket(fileno=3)  # family and type are read from the fd


def notify(state):
    """sd_notify(3): one datagram to NOTIFY_SOCKET ('@name' is an abstract socket)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.sendto(state.encode(), address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall between them
    timeout = IDLE_TIMEOUT  # an idle connection's thread ends after this

    def do_GET(self):
        body = f"gen={GENERATION} python pid={os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        if draining.is_set():
            # The client learns with this answer not to reuse the connection, so none of
            # its requests can cross our closing it (send_header also ends the loop).
            self.send_header("Connection", "close")
        else:
            self.send_header("Keep-Alive", f"timeout={IDLE_TIMEOUT}")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests in flight
    block_on_close = True


def main():
    # Blocked in every thread (threads inherit the mask) and taken by sigwait() below: a
    # Python-level handler would run only when the main thread next runs bytecode, which a
    # main thread asleep in a lock never does if the kernel delivered the signal elsewhere.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    sock = inherited_socket()
    if sock is None:
        server = Server(("", int(os.environ.get("PORT", "8080"))), Handler)
    else:
        server = Server(sock.getsockname()[:2], Handler, bind_and_activate=False)
        server.socket = sock  # already bound and listening: never bind again

    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}).start()
    notify(f"READY=1\nSTATUS=serving generation {GENERATION}")

    signal.sigwait(stop_signals)
    draining.set()
    notify("STOPPING=1")
    server.shutdown()  # stop accepting; what the kernel queued goes to the next version
    server.server_close()  # close our copy of the listener, wait for every handler thread


if __name__ == "__main__":
    main()
