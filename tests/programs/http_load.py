"""An HTTP/1.1 load client that checks every byte: CONNS keep-alive
connections, one thread each, PER_CONN GETs of PATH each; every answer must
be 200 with exactly the bytes of the file EXPECT (a local path). Prints one
line, `per_pid {"PID": N, ...}`, counting the answers by their `X-Pid`
header, and exits 0; on any failure it prints what failed and exits 1.

    http_load.py HOST PORT PATH EXPECT CONNS PER_CONN

Used over memif (issue 12), where the client must be accelerated too: under
the shim with ACCEL_QUEUES=N its threads take the N queue pairs in turn, so
the connections are spread over the server's queues.
"""

import http.client
import json
import sys
import threading


def main():
    host, port, path, expect, conns, per_conn = sys.argv[1:7]
    port, conns, per_conn = int(port), int(conns), int(per_conn)
    with open(expect, "rb") as f:
        body = f.read()
    counts, errors = {}, []
    lock = threading.Lock()

    def run():
        try:
            c = http.client.HTTPConnection(host, port, timeout=20)
            for _ in range(per_conn):
                c.request("GET", path)
                r = c.getresponse()
                got = r.read()
                if r.status != 200 or got != body:
                    raise ValueError(f"status {r.status}, {len(got)} bytes")
                pid = r.getheader("X-Pid")
                with lock:
                    counts[pid] = counts.get(pid, 0) + 1
            c.close()
        except Exception as e:  # noqa: BLE001 - any failure is reported
            with lock:
                errors.append(repr(e))

    threads = [threading.Thread(target=run) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print(f"{len(errors)} connections failed: {errors[:5]}", flush=True)
        sys.exit(1)
    print("per_pid", json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
