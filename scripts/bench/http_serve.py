#!/usr/bin/env python3
"""The TCP side of the netlab comparison, with a chosen congestion control.

    python3 scripts/bench/http_serve.py --file PATH [--host 10.200.2.1] [--port 0] [--cc cubic]

Serves one file over HTTP/1.1 (sendfile) on every path. --cc sets TCP_CONGESTION on the listening
socket, which accepted sockets inherit: root may pick any available algorithm per socket, whereas
a network namespace's default is limited to net.ipv4.tcp_allowed_congestion_control. Prints
`LISTENING <port> <cc>` once bound and `CONN <cc>` (read back from the connection) per request.
"""
import argparse
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument('--file', required=True)
ap.add_argument('--host', default='127.0.0.1')
ap.add_argument('--port', type=int, default=0)
ap.add_argument('--cc', default='')
args = ap.parse_args()
size = os.path.getsize(args.file)


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def do_GET(self):
        cc = self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).split(b'\0')[0].decode()
        print(f'CONN {cc}', flush=True)
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(size))
        self.send_header('Connection', 'close')
        self.end_headers()
        self.wfile.flush()
        try:
            with open(args.file, 'rb') as f:
                self.connection.sendfile(f)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *a):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self):
        if args.cc:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, args.cc.encode())
        super().server_bind()


srv = Server((args.host, args.port), Handler)
cc = srv.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).split(b'\0')[0].decode()
print(f'LISTENING {srv.server_address[1]} {cc}', flush=True)
try:
    srv.serve_forever()
except KeyboardInterrupt:
    pass
sys.exit(0)
