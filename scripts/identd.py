#!/usr/bin/env python3
"""A minimal ident server (RFC 1413) on 127.0.0.1 and ::1, port 113, for the #[pg_test] harness.

pgrx's harness connects over TCP without a password, and with pgaadauth preloaded a `trust` line
asks for one. Its pg_hba.conf (pgrx-tests/pg_test_hba.conf) admits it with `ident`, a method
pgaadauth leaves alone and that every PostgreSQL build has (the relocatable builds have no PAM).
The answer is the true owner of the client's socket, read from /proc/net/tcp{,6}.
Runs until killed; scripts/test.sh starts and stops it.
"""
import pwd
import socket
import socketserver
import sys
import threading


ESTABLISHED = "01"


def owner(client_port, server_port):
    """The user owning the established TCP connection from client_port to server_port."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] != ESTABLISHED:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if local_port == client_port and remote_port == server_port:
                try:
                    return pwd.getpwuid(int(fields[7])).pw_name
                except KeyError:
                    return None
    return None


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        query = self.rfile.readline(128).decode("ascii", "replace").strip()
        try:
            client_port, server_port = (int(p) for p in query.split(","))
        except ValueError:
            self.wfile.write(f"{query} : ERROR : INVALID-PORT\r\n".encode())
            return
        user = owner(client_port, server_port)
        answer = f"USERID : UNIX : {user}" if user else "ERROR : NO-USER"
        self.wfile.write(f"{client_port} , {server_port} : {answer}\r\n".encode())


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class Server6(Server):
    address_family = socket.AF_INET6


def main():
    servers = []
    for cls, host in ((Server, "127.0.0.1"), (Server6, "::1")):
        try:
            servers.append(cls((host, 113), Handler))
        except OSError as e:
            print(f"identd: not serving on {host}: {e}", file=sys.stderr)
    if not servers:
        sys.exit(1)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
