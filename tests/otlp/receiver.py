#!/usr/bin/env python3
"""An OTLP/HTTP logs receiver for the scenarios (`daemon_exports_every_event_as_otlp_logs`).

It decodes each `POST /v1/logs` body as an `ExportLogsServiceRequest` with the OpenTelemetry
project's own protobuf definitions (PyPI `opentelemetry-proto`, installed by `cargo xtask
test` under `target/python`), and writes:

- `--out`: one JSON line per LogRecord it accepted: the record as protobuf's JSON mapping
  (`record`), its attributes as a flat object (`attributes`), and the resource's
  (`resource`) and scope's (`scope`);
- `--requests`: one JSON line per request: its path, content type, record count and the
  status it was answered with.

It answers the first `--busy` requests with `503` and `Retry-After: --retry-after` (their
records are not kept: the exporter must send them again), the rest with 200 and an empty
`ExportLogsServiceResponse`. It binds port 0 on 127.0.0.1 and writes the port to
`--port-file` once it listens (no free-port race).
"""

import argparse
import http.server
import json
import os
import sys
import threading

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)


def value_of(any_value):
    which = any_value.WhichOneof("value")
    if which is None:
        return None
    if which in ("array_value", "kvlist_value", "bytes_value"):
        return MessageToDict(any_value)
    return getattr(any_value, which)


def flat(attributes):
    out = {}
    for kv in attributes:
        if kv.key in out:
            out.setdefault("__duplicates__", []).append(kv.key)
        out[kv.key] = value_of(kv.value)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port-file", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--requests", required=True)
    p.add_argument("--busy", type=int, default=1)
    p.add_argument("--retry-after", default="1")
    args = p.parse_args()

    out = open(args.out, "a", encoding="utf-8")
    requests = open(args.requests, "a", encoding="utf-8")
    state = {"busy": args.busy}
    # One request at a time, whatever the connections.
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def answer(self, status, body=b"", headers=()):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def do_POST(self):
            with lock:
                self.handle_post()

        def handle_post(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            req = ExportLogsServiceRequest.FromString(body)
            count = sum(
                len(sl.log_records) for rl in req.resource_logs for sl in rl.scope_logs
            )
            status = 200
            if self.path != "/v1/logs":
                status = 404
            elif state["busy"] > 0:
                state["busy"] -= 1
                status = 503
            requests.write(
                json.dumps(
                    {
                        "path": self.path,
                        "content_type": self.headers.get("Content-Type"),
                        "records": count,
                        "status": status,
                    }
                )
                + "\n"
            )
            requests.flush()
            if status == 503:
                self.answer(503, b"busy", [("Retry-After", args.retry_after)])
                return
            if status != 200:
                self.answer(status, b"no such path")
                return
            for rl in req.resource_logs:
                resource = flat(rl.resource.attributes)
                for sl in rl.scope_logs:
                    for lr in sl.log_records:
                        line = {
                            "resource": resource,
                            "scope": {"name": sl.scope.name, "version": sl.scope.version},
                            "record": MessageToDict(lr),
                            "attributes": flat(lr.attributes),
                            "body": value_of(lr.body),
                            "time_unix_nano": lr.time_unix_nano,
                            "severity_number": lr.severity_number,
                            "event_name": lr.event_name,
                        }
                        out.write(json.dumps(line) + "\n")
            out.flush()
            self.answer(200, ExportLogsServiceResponse().SerializeToString())

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{server.server_address[1]}\n")
    os.rename(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
