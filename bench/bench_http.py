#!/usr/bin/env python3
"""What the HTTP layer costs: the same generations through the OpenAI HTTP API (server-sent
events) and through JSON-RPC streaming, side by side on one server, plus the request rate of
GET /health on one keep-alive connection (framing and routing alone).

    bench/bench_http.py [--bin build/cserve] [--model PATH] [--requests 32] [--concurrency 8]
                        [--max-tokens 64]

Python 3 standard library only. Prints a table; each generation figure is the median of three
rounds. Both protocols run greedy with ignore_eos, so every request makes max_tokens tokens.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

PROMPTS = [f"Write a short note about topic number {i}: " for i in range(64)]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(binary, model):
    rpc, http = free_port(), free_port()
    proc = subprocess.Popen([binary, "serve", "--model", model, "--port", str(rpc), "--http-port", str(http),
                             "--max-model-len", "1024"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for raw in proc.stderr:
        if b"ready: model" in raw:
            break
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return proc, rpc, http


def http_stream(port, prompt, max_tokens):
    """One streamed completion over HTTP; returns the number of content events."""
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
                       "stream": True}).encode()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    data = b""
    while not data.endswith(b"0\r\n\r\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data.count(b'"text":') - 1  # the last chunk of the choice carries only its finish_reason


def rpc_stream(port, prompt, max_tokens):
    s = socket.create_connection(("127.0.0.1", port))
    req = {"jsonrpc": "2.0", "id": 1, "method": "generate", "params": {
        "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True, "stream": True}}
    s.sendall(json.dumps(req).encode() + b"\n")
    f = s.makefile("rb")
    n = 0
    for line in f:
        msg = json.loads(line)
        if msg.get("method") == "token":
            n += 1
        elif "result" in msg or "error" in msg:
            break
    s.close()
    return n


def run_round(fn, port, requests, concurrency, max_tokens):
    lock = threading.Lock()
    next_i = [0]
    tokens = [0]

    def worker():
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= requests:
                return
            n = fn(port, PROMPTS[i % len(PROMPTS)], max_tokens)
            with lock:
                tokens[0] += n

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tokens[0], time.monotonic() - t0


def health_rate(port, seconds=2.0):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.endswith(b"\r\n\r\n"):
            data += s.recv(4096)
        n += 1
    s.close()
    return n / (time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("CSERVE_BIN", "build/cserve"))
    ap.add_argument("--model", default=os.environ.get("CSERVE_MODEL", "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    a = ap.parse_args()
    proc, rpc, http = start(a.bin, a.model)
    try:
        rates = {"http": [], "rpc": []}
        for _ in range(3):  # alternate, so drift in the machine's speed hits both alike
            for name, fn, port in (("http", http_stream, http), ("rpc", rpc_stream, rpc)):
                tokens, secs = run_round(fn, port, a.requests, a.concurrency, a.max_tokens)
                if tokens != a.requests * a.max_tokens:
                    sys.exit(f"{name}: {tokens} tokens streamed, expected {a.requests * a.max_tokens}")
                rates[name].append(tokens / secs)
        h, r = statistics.median(rates["http"]), statistics.median(rates["rpc"])
        print(f"| measure | value |\n|---|---|")
        print(f"| streamed tokens/s, HTTP SSE ({a.requests} requests x {a.max_tokens} tokens, "
              f"{a.concurrency} at a time) | {h:.1f} |")
        print(f"| streamed tokens/s, JSON-RPC, same load | {r:.1f} |")
        print(f"| HTTP / JSON-RPC | {h / r:.3f} |")
        print(f"| GET /health on one keep-alive connection | {health_rate(http):.0f} requests/s |")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
