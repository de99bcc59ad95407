#!/usr/bin/env python3
"""Benchmark of `sdpal serve` (docs/serve.md): per-request overhead against the CLI for the same
image, and a load run (many concurrent clients, a fixed number of requests) reporting requests,
concurrency, 503s, p50/p99 latency and the server's peak RSS. Python standard library only.

  bench/serve_bench.py [--sdpal build/sdpal] [--model DIR] [--clients 100] [--requests 300]
"""
import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, path, body=None, timeout=300):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = json.dumps(body) if body is not None else None
    c.request("POST" if body is not None else "GET", path, body=data,
              headers={"Content-Type": "application/json"} if data else {})
    r = c.getresponse()
    payload = r.read()
    c.close()
    return r.status, payload


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sdpal", default=os.path.join(root, "build", "sdpal"))
    ap.add_argument("--model", default=os.path.join(root, "models", "demo-fashion"))
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5, help="runs for the overhead comparison")
    ap.add_argument("--queue-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="sdpal --threads (0: all cores)")
    a = ap.parse_args()
    prompt, seed = "a photo of a sneaker", 1234
    threads = ["--threads", str(a.threads)] if a.threads else []

    # 1. The CLI: a fresh process per image (load + generate + write).
    out = tempfile.mkdtemp(prefix="sdpal_bench_")
    cli_wall, cli_gen = [], []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        p = subprocess.run([a.sdpal, "generate", "-m", a.model, "-p", prompt, "--seed", str(seed),
                            "--steps", str(a.steps), "--cfg-scale", "7.5", "-o",
                            os.path.join(out, "cli.png")] + threads,
                           capture_output=True, text=True, check=True)
        cli_wall.append(time.perf_counter() - t0)
        m = re.search(r"generate ([0-9.]+)s", p.stderr)
        cli_gen.append(float(m.group(1)))

    # 2. The server, the same image over HTTP, one request at a time.
    port = free_port()
    log = open(os.path.join(out, "serve.log"), "w")
    srv = subprocess.Popen([a.sdpal, "serve", "-m", a.model, "--port", str(port), "--queue-size",
                            str(a.queue_size), "--log-format", "json"] + threads,
                           stderr=log)
    try:
        t_start = time.perf_counter()
        while True:
            try:
                if request(port, "/health", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
            if srv.poll() is not None or time.perf_counter() - t_start > 60:
                sys.exit("the server did not start")
        startup = time.perf_counter() - t_start
        body = {"prompt": prompt, "seed": seed, "steps": a.steps, "cfg_scale": 7.5,
                "sampler_name": "Euler a"}
        served = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            status, _ = request(port, "/sdapi/v1/txt2img", body)
            served.append(time.perf_counter() - t0)
            assert status == 200, status

        # 3. Load: `clients` threads share `requests` requests.
        lock = threading.Lock()
        todo = [a.requests]
        results = []  # (status, seconds)
        errors = []

        def client(k):
            while True:
                with lock:
                    if todo[0] == 0:
                        return
                    todo[0] -= 1
                    n = todo[0]
                t0 = time.perf_counter()
                try:
                    status, _ = request(port, "/sdapi/v1/txt2img",
                                        dict(body, seed=n), timeout=600)
                except OSError as e:
                    with lock:
                        errors.append(str(e))
                    continue
                with lock:
                    results.append((status, time.perf_counter() - t0))

        t0 = time.perf_counter()
        ts = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        load_s = time.perf_counter() - t0
        ok = [s for st, s in results if st == 200]
        busy = [s for st, s in results if st == 503]
        other = [st for st, _ in results if st not in (200, 503)]
        rss = peak_rss_mib(srv.pid)
    finally:
        srv.terminate()
        srv.wait()

    med = statistics.median
    report = {
        "model": a.model, "steps": a.steps,
        "cli_wall_s": med(cli_wall), "cli_generate_s": med(cli_gen),
        "server_startup_s": startup, "server_request_s": med(served),
        "overhead_vs_cli_generate_ms": (med(served) - med(cli_gen)) * 1000,
        "saved_vs_cli_process_s": med(cli_wall) - med(served),
        "load": {"requests": a.requests, "concurrency": a.clients, "answered": len(results),
                 "ok": len(ok), "503": len(busy), "other_status": other,
                 "connection_errors": len(errors), "wall_s": load_s,
                 "throughput_ok_per_s": len(ok) / load_s,
                 "p50_ok_s": pct(ok, 50) if ok else None, "p99_ok_s": pct(ok, 99) if ok else None,
                 "p50_503_ms": pct(busy, 50) * 1000 if busy else None,
                 "p99_all_s": pct([s for _, s in results], 99) if results else None,
                 "server_peak_rss_mib": rss},
    }
    print(json.dumps(report, indent=2))
    print(f"\nCLI (new process per image): {med(cli_wall):.3f} s wall, of which generate "
          f"{med(cli_gen):.3f} s; server request: {med(served):.3f} s "
          f"(overhead vs the CLI's generate: {report['overhead_vs_cli_generate_ms']:+.1f} ms)")
    L = report["load"]
    print(f"load: {L['requests']} requests, {L['concurrency']} clients: {L['ok']} x 200, "
          f"{L['503']} x 503, other {L['other_status']}, errors {L['connection_errors']}; "
          f"p50 {L['p50_ok_s']} s p99 {L['p99_ok_s']} s (200s); peak RSS {rss:.0f} MiB")
    return 0 if not other and not errors and len(results) == a.requests else 1


if __name__ == "__main__":
    sys.exit(main())
