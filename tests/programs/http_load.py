"""An HTTP/1.1 load client that checks every byte, in one of two modes.

    http_load.py HOST PORT PATH EXPECT CONNS PER_CONN
    http_load.py --loop STOPFILE SECONDS HOST PORT PATH EXPECT CONNS

The first: CONNS keep-alive connections, one thread each, PER_CONN GETs of
PATH each; every answer must be 200 with exactly the bytes of the file
EXPECT (a local path). Counts the answers by their `X-Pid` header and exits
0; on any failure it prints what failed and exits 1.

With --loop: CONNS connections loop over GETs, reconnecting after a
failure, until the file STOPFILE exists (or SECONDS pass); exits 0. A
request that got nothing back on a connection that had served (the server
closed an idle keep-alive connection under it: what every HTTP client
retries) is counted as retried; any other failure is listed with the pid
that had answered on that connection (`-` if none had).

What it prints, one item a line: `served PID N` for each worker that
answered, then (--loop) `failed PID WHY` for each failure and `retried N`.

Used over memif (issue 12), where the client must be accelerated too: under
the shim with ACCEL_QUEUES=N its threads take the N queue pairs in turn, so
the connections are spread over the server's queues.
"""

import http.client
import os
import sys
import threading
import time


def check(r, body):
    got = r.read()
    if r.status != 200 or got != body:
        raise ValueError(f"status {r.status}, {len(got)} bytes")
    return r.getheader("X-Pid")


def fixed(host, port, path, body, conns, per_conn):
    counts, errors = {}, []
    lock = threading.Lock()

    def run():
        try:
            c = http.client.HTTPConnection(host, port, timeout=20)
            for _ in range(per_conn):
                c.request("GET", path)
                pid = check(c.getresponse(), body)
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
    report(counts)


def report(served):
    for pid, n in sorted(served.items()):
        print("served", pid, n)
    sys.stdout.flush()


# What a closed idle keep-alive connection looks like to http.client.
IDLE_CLOSE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def loop(stopfile, seconds, host, port, path, body, conns):
    served, failed, retried = {}, [], [0]
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def going():
        return not os.path.exists(stopfile) and time.monotonic() < end

    def run():
        while going():
            pid = None
            try:
                c = http.client.HTTPConnection(host, port, timeout=10)
                c.connect()
            except Exception as e:  # noqa: BLE001 - any failure is counted
                with lock:
                    failed.append([None, "connect: " + repr(e)])
                time.sleep(0.05)
                continue
            while going():
                try:
                    c.request("GET", path)
                    pid = check(c.getresponse(), body)
                    with lock:
                        served[pid] = served.get(pid, 0) + 1
                except Exception as e:  # noqa: BLE001 - any failure is counted
                    with lock:
                        if pid is not None and isinstance(e, IDLE_CLOSE):
                            retried[0] += 1
                        else:
                            failed.append([pid, repr(e)])
                    break
            c.close()

    threads = [threading.Thread(target=run) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report(served)
    for pid, why in failed:
        print("failed", pid or "-", why.replace("\n", " "))
    print("retried", retried[0], flush=True)


def main():
    args = sys.argv[1:]
    if args and args[0] == "--loop":
        stopfile, seconds = args[1], float(args[2])
        host, port, path, expect, conns = args[3:8]
        with open(expect, "rb") as f:
            body = f.read()
        loop(stopfile, seconds, host, int(port), path, body, int(conns))
        return
    host, port, path, expect, conns, per_conn = args[0:6]
    with open(expect, "rb") as f:
        body = f.read()
    fixed(host, int(port), path, body, int(conns), int(per_conn))


if __name__ == "__main__":
    main()
