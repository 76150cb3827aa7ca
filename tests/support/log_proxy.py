"""An HTTP/1.1 forwarding proxy that writes down what a client asks: it
listens on 127.0.0.1:PORT, sends each request on to UPSTREAM (host:port)
with its Host header unchanged (so that a registry's token realm, made from
Host, names the proxy again), and appends "METHOD PATH STATUS" for each
request to LOG. Request bodies may be chunked; answers go back whole.

Usage: python3 log_proxy.py PORT UPSTREAM LOG
"""
import http.client
import http.server
import sys
import threading

port, upstream, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else None

    def forward(self):
        data = self.body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP and k.lower() != "content-length"}
        if data is not None:
            headers["Content-Length"] = str(len(data))
        conn = http.client.HTTPConnection(upstream, timeout=60)
        conn.request(self.command, self.path, body=data, headers=headers)
        answer = conn.getresponse()
        payload = answer.read()
        conn.close()
        # written down before the answer goes back, so that a client that
        # has its answer finds its request in the log
        with lock, open(log, "a") as f:
            f.write("%s %s %d\n" % (self.command, self.path, answer.status))
        self.send_response_only(answer.status, answer.reason)
        for k, v in answer.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        length = answer.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(payload))
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = forward


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
server.serve_forever()
