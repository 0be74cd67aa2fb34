#!/usr/bin/env python3
"""End-to-end tests of `cserve serve` (JSON-RPC 2.0, newline-delimited) over real sockets.

Python 3 standard library only. Environment: CSERVE_BIN (the cserve binary), CSERVE_MODEL
(the default model, SmolLM2-135M-Instruct Q4_1). Starts three server instances:
  main   TCP, --max-model-len 1024 (every generation / robustness check)
  auth   TCP, --api-key, --max-line-bytes 4096, --max-queued 2
  unix   --socket PATH (and SIGTERM with a request in flight)
Prints one line per check; exits 1 with a summary when any check fails.
Options: -k SUBSTR runs only the test functions whose name contains SUBSTR; -v logs traffic.
"""
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

BIN = os.environ.get("CSERVE_BIN", "build/cserve")
MODEL = os.environ.get("CSERVE_MODEL", "models/SmolLM2-135M-Instruct.Q4_1.gguf")
MAX_MODEL_LEN = 1024
VERBOSE = "-v" in sys.argv
TIMEOUT = 60.0  # seconds to wait for one response

# ----------------------------------------------------------------------------------------
# checks

_lock = threading.Lock()
_checks = 0
_failures = []


def check(name, cond, detail=""):
    """Records one assertion; prints 'ok' or 'FAIL' with the detail (the exchange)."""
    global _checks
    with _lock:
        _checks += 1
        if cond:
            print(f"ok    {name}", flush=True)
        else:
            msg = f"{name}: {detail}" if detail else name
            _failures.append(msg)
            print(f"FAIL  {msg}", flush=True)
    return bool(cond)


def short(x, n=600):
    s = x if isinstance(x, str) else (x.decode("utf-8", "replace") if isinstance(x, (bytes, bytearray)) else json.dumps(x))
    return s if len(s) <= n else s[:n] + f"...({len(s)} chars)"


# ----------------------------------------------------------------------------------------
# client


class Closed(Exception):
    pass


class Client:
    """One connection. Responses are filed by id, token notifications by params.id, in
    arrival order; `order` lists ('resp'|'note', id) as lines arrive."""

    def __init__(self, addr, timeout=10.0):
        fam = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(addr)
        self.buf = bytearray()
        self.responses = {}   # id -> message (the id's Python value; 7 and "7" differ)
        self.null_id = []     # responses with id null
        self.notes = {}       # request id -> [params of "token" notifications]
        self.other = []       # anything else the server sent
        self.order = []
        self.closed = False
        self.next_id = 1000  # automatic ids; tests that pick ids use small ones

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode()
        if VERBOSE:
            print("  >>", short(data, 300), flush=True)
        self.sock.sendall(data)

    def send(self, obj):
        self.send_raw(json.dumps(obj) + "\n")

    def request(self, method, params=None, id=None, **extra):
        """Sends a request (params omitted when None); returns its id."""
        if id is None:
            id = self.next_id
            self.next_id += 1
        self.responses.pop(_key(id), None)  # a reused id: wait for the new answer
        msg = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            msg["params"] = params
        msg.update(extra)
        self.send(msg)
        return id

    def _read_line(self, deadline):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 1]
                return line
            if self.closed:
                raise Closed("connection closed by the server")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no line from the server in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("no line from the server in time")
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.closed = True
                if self.buf:
                    line = bytes(self.buf)
                    self.buf.clear()
                    return line  # an unterminated last line: still file it
                raise Closed("connection closed by the server")
            self.buf += chunk

    def read_msg(self, timeout=TIMEOUT):
        """Reads and files one message; returns it."""
        line = self._read_line(time.monotonic() + timeout)
        if VERBOSE:
            print("  <<", short(line, 300), flush=True)
        try:
            msg = json.loads(line.decode("utf-8"))
        except Exception:
            check("server line is valid UTF-8 JSON", False, short(line))
            self.other.append(line)
            return None
        if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
            check("server message is a JSON-RPC 2.0 object", False, short(line))
            self.other.append(msg)
            return msg
        if "method" in msg and "id" not in msg:
            p = msg.get("params") or {}
            if msg["method"] == "token" and isinstance(p, dict) and "id" in p:
                self.notes.setdefault(_key(p["id"]), []).append(p)
                self.order.append(("note", _key(p["id"])))
            else:
                self.other.append(msg)
        elif "id" in msg:
            if msg["id"] is None:
                self.null_id.append(msg)
                self.order.append(("resp", None))
            else:
                self.responses[_key(msg["id"])] = msg
                self.order.append(("resp", _key(msg["id"])))
        else:
            self.other.append(msg)
        return msg

    def wait(self, id, timeout=TIMEOUT):
        """The response to id (reading and filing others meanwhile)."""
        deadline = time.monotonic() + timeout
        k = _key(id)
        while k not in self.responses:
            self.read_msg(max(0.001, deadline - time.monotonic()))
        return self.responses[k]

    def wait_null(self, timeout=TIMEOUT):
        """The next response with id null."""
        deadline = time.monotonic() + timeout
        n = len(self.null_id)
        while len(self.null_id) == n:
            self.read_msg(max(0.001, deadline - time.monotonic()))
        return self.null_id[n]

    def call(self, method, params=None, timeout=TIMEOUT, **kw):
        return self.wait(self.request(method, params, **kw), timeout)

    def wait_closed(self, timeout=10.0):
        """True when the server closes the connection within timeout (filing what comes)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.read_msg(max(0.001, deadline - time.monotonic()))
        except Closed:
            return True
        except TimeoutError:
            return False

    def quiet(self, timeout):
        """True when nothing at all arrives for timeout seconds."""
        try:
            self.read_msg(timeout)
            return False
        except TimeoutError:
            return True
        except Closed:
            return False


def _key(id):
    # Python's True == 1; keep booleans apart so a bool id can never match an int one.
    return ("bool", id) if isinstance(id, bool) else id


def result_of(resp):
    return resp.get("result") if isinstance(resp, dict) else None


def is_error(resp, code, param=None, id="any"):
    """True when resp is an error with this code (and data.param / id when given)."""
    if not isinstance(resp, dict) or "error" not in resp or "result" in resp:
        return False
    e = resp["error"]
    if not isinstance(e, dict) or not isinstance(e.get("message"), str):
        return False
    codes = code if isinstance(code, (tuple, list, set)) else (code,)
    if e.get("code") not in codes:
        return False
    if id != "any" and resp.get("id", "absent") != id:
        return False
    if param is not None:
        data = e.get("data")
        # a nested field may be named with its path: "messages[0].content", "tokens[1]"
        dp = data.get("param") if isinstance(data, dict) else None
        if not isinstance(dp, str) or not (dp == param or dp.startswith(param + "[") or dp.startswith(param + ".")):
            return False
        if param not in e["message"]:
            return False
    return True


# ----------------------------------------------------------------------------------------
# servers


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    def __init__(self, name, extra, socket_path=None):
        self.name = name
        self.port = free_port()
        self.socket_path = socket_path
        args = [BIN, "serve", "--model", MODEL, "--host", "127.0.0.1", "--port", str(self.port), "--http-port", "0"] + extra
        if socket_path:
            args += ["--socket", socket_path]
        self.args = args
        self.log = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.reader.start()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.append(line)
            if VERBOSE:
                print(f"  [{self.name}] {line}", flush=True)
            if "ready: model" in line:  # the model loads after the sockets listen
                self.ready.set()

    @property
    def addr(self):
        return ("127.0.0.1", self.port)

    def wait_ready(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not self.ready.is_set():
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader take the last lines
                return False
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        if self.socket_path:  # the line may name the TCP address: also wait for the path
            while time.monotonic() < deadline:
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(self.socket_path)
                    s.close()
                    break
                except OSError:
                    time.sleep(0.05)
        return True

    def alive(self):
        return self.proc.poll() is None

    def tail(self, n=15):
        return " | ".join(self.log[-n:])

    def connect(self, timeout=10.0):
        return Client(self.addr, timeout)

    def exit_text(self, rc, dt):
        if rc is None:
            return f"still running {dt:.1f}s after SIGTERM"
        if rc < 0:
            return f"killed by signal {-rc} ({signal.Signals(-rc).name}) {dt:.1f}s after SIGTERM: it did not handle it"
        return f"exit code {rc} after {dt:.1f}s; stderr: {self.tail(4)}"

    def terminate(self, timeout=5.0):
        """SIGTERM; returns (exit code or None if still running after timeout, seconds)."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        return rc, time.monotonic() - t0

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ----------------------------------------------------------------------------------------
# shared state and helpers

S = {}           # servers by name
EXPECT = {}      # (prompt, max_tokens, chat, ignore_eos) -> greedy text from `cserve generate`
VOCAB = None

P_FRANCE = "The capital of France is"
PROMPTS4 = [P_FRANCE, "Once upon a time", "1, 2, 3, 4,", "def fibonacci(n):"]
CHAT_Q = "What is 2+2?"
BG_PROMPT = "The quick brown fox"


def cli_greedy(prompt, max_tokens, chat=False, ignore_eos=False):
    args = [BIN, "generate", "--model", MODEL, "--prompt", prompt, "--temperature", "0",
            "--max-tokens", str(max_tokens)]
    if chat:
        args.append("--chat")
    if ignore_eos:
        args.append("--ignore-eos")
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {r.returncode}: {r.stderr.decode()[-500:]}")
    return r.stdout.decode("utf-8")


def expected(prompt, max_tokens, chat=False, ignore_eos=False):
    k = (prompt, max_tokens, chat, ignore_eos)
    if k not in EXPECT:
        EXPECT[k] = cli_greedy(prompt, max_tokens, chat, ignore_eos)
    return EXPECT[k]


def vocab_size():
    r = subprocess.run([BIN, "info", "--model", MODEL], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    m = re.search(r"^vocabulary\s+(\d+)", r.stdout.decode(), re.M)
    if not m:
        raise RuntimeError("cannot read the vocabulary size from `cserve info`")
    return int(m.group(1))


def gen(c, params, timeout=TIMEOUT):
    return c.call("generate", params, timeout)


def choice0(resp):
    r = result_of(resp)
    return r["choices"][0] if r and r.get("choices") else None


def stats(c):
    return result_of(c.call("stats", timeout=10))


def wait_idle(addr, timeout=10.0, others=0):
    """Polls stats from a fresh connection until nothing runs, waits or holds a block, but for
    `others` one-block requests that another client keeps running. Returns (ok, last stats)."""
    c = Client(addr)
    try:
        deadline = time.monotonic() + timeout
        st = None
        while True:
            st = stats(c)
            if st and st.get("running") <= others and st.get("waiting") == 0 and st.get("kv_blocks_used") <= others:
                return True, st
            if time.monotonic() > deadline:
                return False, st
            time.sleep(0.1)
    finally:
        c.close()


def check_idle(name, addr, timeout=10.0, others=0):
    ok, st = wait_idle(addr, timeout, others)
    what = f"running <= {others} (another client's), waiting == 0, kv_blocks_used <= {others}" if others else \
        "running == waiting == kv_blocks_used == 0"
    check(f"{name}: stats show {what} within {timeout:.0f} s", ok, f"last stats {short(st)}")
    return st


def tokenize(c, text, add_special=True):
    r = result_of(c.call("tokenize", {"text": text, "add_special": add_special}))
    return r["tokens"]


def alive_check(name, server):
    """The server still answers health on a new connection."""
    try:
        c = server.connect()
        r = c.call("health", timeout=10)
        c.close()
        ok = result_of(r) == {"status": "ok"}
        detail = short(r)
    except Exception as e:  # noqa: BLE001
        ok, detail = False, f"{type(e).__name__}: {e}; server alive={server.alive()} stderr: {server.tail()}"
    return check(f"{name}: server still serves health on a new connection", ok, detail)


# ----------------------------------------------------------------------------------------
# tests: basic methods


def test_basic_methods():
    c = S["main"].connect()
    r = c.call("health")
    check("health -> {status: ok}", result_of(r) == {"status": "ok"} and r.get("id") == 1000, short(r))

    r = c.call("model")
    m = result_of(r) or {}
    ok = (isinstance(m.get("name"), str) and m["name"] != "" and m.get("architecture") == "llama"
          and m.get("context_length") in (MAX_MODEL_LEN, 8192) and m.get("tensor_parallel_size") == 1
          and m.get("device") in ("cpu", "cuda") and "Q4_1" in json.dumps(m.get("weight_formats")))
    check("model: name, architecture llama, context_length, weight_formats has Q4_1, device, tp 1", ok, short(r))

    r = c.call("stats")
    st = result_of(r) or {}
    fields = ["running", "waiting", "kv_blocks_total", "kv_blocks_free", "kv_blocks_used", "kv_blocks_cached",
              "prefix_cache_hit_rate", "prompt_tokens", "generated_tokens", "uptime_s"]
    ok = all(isinstance(st.get(f), (int, float)) and not isinstance(st.get(f), bool) for f in fields)
    ok = ok and st["kv_blocks_total"] > 0 and st["kv_blocks_used"] + st["kv_blocks_free"] <= st["kv_blocks_total"]
    ok = ok and st["running"] == 0 and st["waiting"] == 0 and st["kv_blocks_used"] == 0 and st["uptime_s"] >= 0
    check("stats: every field numeric; idle server has running=waiting=used=0, used+free <= total", ok, short(r))

    r = c.call("tokenize", {"text": "Hello world"})
    check("tokenize 'Hello world' -> [19556, 905]", result_of(r) == {"tokens": [19556, 905]}, short(r))
    r = c.call("tokenize", {"text": "Hello world", "add_special": False})
    check("tokenize add_special false -> [19556, 905]", result_of(r) == {"tokens": [19556, 905]}, short(r))
    r = c.call("detokenize", {"tokens": [19556, 905]})
    check("detokenize [19556, 905] -> 'Hello world'", result_of(r) == {"text": "Hello world"}, short(r))
    txt = "héllo wörld ✓ 日本語 🙂"
    toks = tokenize(c, txt, False)
    r = c.call("detokenize", {"tokens": toks})
    check("tokenize/detokenize round trip of non-ASCII text", result_of(r) == {"text": txt}, short(r))
    r = c.call("tokenize", {"text": "<|im_start|>user", "add_special": False})
    t = (result_of(r) or {}).get("tokens", [])
    check("tokenize parses special tokens (<|im_start|> is one token)", len(t) >= 2 and t[0] == 1, short(r))

    r = c.call("apply_chat_template", {"messages": [{"role": "user", "content": CHAT_Q}]})
    p = (result_of(r) or {}).get("prompt", "")
    ok = (isinstance(p, str) and f"<|im_start|>user\n{CHAT_Q}<|im_end|>" in p
          and p.endswith("<|im_start|>assistant\n"))
    check("apply_chat_template: ChatML with the user turn and the assistant opening", ok, short(r))
    c.close()


# ----------------------------------------------------------------------------------------
# tests: generate


def test_generate_greedy_matches_cli():
    c = S["main"].connect()
    want = expected(P_FRANCE, 8)
    st0 = stats(c)
    r = gen(c, {"prompt": P_FRANCE, "max_tokens": 8, "temperature": 0})
    ch = choice0(r)
    res = result_of(r) or {}
    check("generate greedy (non-streaming) text == `cserve generate` stdout",
          ch is not None and ch.get("text") == want, f"cli {want!r}; server {short(r)}")
    if not ch:
        return
    ptoks = tokenize(c, P_FRANCE)
    u = res.get("usage", {})
    check("generate: usage.prompt_tokens == len(tokenize(prompt)), completion_tokens == len(token_ids)",
          u.get("prompt_tokens") == len(ptoks) and u.get("completion_tokens") == len(ch.get("token_ids", []))
          and isinstance(u.get("cached_tokens"), int), short(res))
    exp_reason = "length" if len(ch.get("token_ids", [])) == 8 else "stop"
    check(f"generate: finish_reason {exp_reason!r}, index 0", ch.get("finish_reason") == exp_reason and ch.get("index") == 0, short(ch))
    d = result_of(c.call("detokenize", {"tokens": ch["token_ids"]}))
    check("generate: detokenize(token_ids) == text", d == {"text": ch["text"]}, f"{short(d)} vs {ch['text']!r}")
    t = res.get("timing", {})
    ok = all(isinstance(t.get(k), (int, float)) and t[k] >= 0 for k in ("queue_ms", "ttft_ms", "total_ms"))
    check("generate: timing queue_ms, ttft_ms <= total_ms, all >= 0", ok and t["ttft_ms"] <= t["total_ms"] + 1e-6, short(t))
    st1 = stats(c)
    if st0 and st1:
        check("stats: generated_tokens grew by exactly completion_tokens",
              st1["generated_tokens"] - st0["generated_tokens"] == u.get("completion_tokens"), f"{short(st0)} -> {short(st1)}")
        check("stats: prompt_tokens grew by 1..prompt_tokens",
              1 <= st1["prompt_tokens"] - st0["prompt_tokens"] <= len(ptoks), f"{short(st0)} -> {short(st1)}")

    # the same prompt given as token ids
    r = gen(c, {"tokens": ptoks, "max_tokens": 8, "temperature": 0})
    check("generate from token ids == from the prompt text", (choice0(r) or {}).get("text") == want, short(r))

    # streaming: the pieces add up to the final response, which equals the CLI
    id = c.request("generate", {"prompt": P_FRANCE, "max_tokens": 8, "temperature": 0, "stream": True})
    r = c.wait(id)
    notes = c.notes.get(id, [])
    ch = choice0(r) or {}
    check("generate stream: final text == `cserve generate` stdout", ch.get("text") == want, f"cli {want!r}; {short(r)}")
    check("generate stream: >= 1 token notification per generated token",
          len(notes) >= 1 and sum(len(n.get("token_ids", [])) for n in notes) == len(ch.get("token_ids", [])), short(notes))
    check("generate stream: concatenated notification texts == final text",
          "".join(n.get("text", "") for n in notes) == ch.get("text"), short(notes))
    check("generate stream: concatenated notification token_ids == final token_ids",
          [t for n in notes for t in n.get("token_ids", [])] == ch.get("token_ids"), short(notes))
    check("generate stream: notifications carry index 0", all(n.get("index") == 0 for n in notes), short(notes))
    first_resp = c.order.index(("resp", id))
    check("generate stream: every notification arrives before the final response",
          all(i < first_resp for i, o in enumerate(c.order) if o == ("note", id)), short(c.order))

    # chat messages == `cserve generate --chat`; apply_chat_template's prompt gives the same
    want_chat = expected(CHAT_Q, 8, chat=True)
    msgs = [{"role": "user", "content": CHAT_Q}]
    r = gen(c, {"messages": msgs, "max_tokens": 8, "temperature": 0})
    check("generate messages greedy == `cserve generate --chat`", (choice0(r) or {}).get("text") == want_chat,
          f"cli {want_chat!r}; {short(r)}")
    p = (result_of(c.call("apply_chat_template", {"messages": msgs})) or {}).get("prompt")
    r = gen(c, {"prompt": p, "max_tokens": 8, "temperature": 0})
    check("generate on apply_chat_template's prompt == generate on messages", (choice0(r) or {}).get("text") == want_chat, short(r))
    c.close()


def test_generate_options():
    c = S["main"].connect()
    want = expected(P_FRANCE, 8)

    # max_tokens 0: prefill only
    st0 = stats(c)
    r = gen(c, {"prompt": P_FRANCE, "max_tokens": 0})
    ch, res = choice0(r), result_of(r) or {}
    check("max_tokens 0: empty text and token_ids, finish length, completion_tokens 0",
          ch is not None and ch.get("text") == "" and ch.get("token_ids") == [] and ch.get("finish_reason") == "length"
          and res.get("usage", {}).get("completion_tokens") == 0, short(r))
    st1 = stats(c)
    check("max_tokens 0: stats generated_tokens unchanged", st0 and st1 and st1["generated_tokens"] == st0["generated_tokens"],
          f"{short(st0)} -> {short(st1)}")

    # stop strings (array and plain string) and stop_token_ids
    cut = want.find(".")
    if cut > 0:
        for stop in (["."], "."):
            r = gen(c, {"prompt": P_FRANCE, "max_tokens": 8, "temperature": 0, "stop": stop})
            ch = choice0(r) or {}
            check(f"stop {json.dumps(stop)}: text cut before it, finish_reason stop",
                  ch.get("text") == want[:cut] and ch.get("finish_reason") == "stop", f"greedy {want!r}; {short(r)}")
    r = gen(c, {"prompt": P_FRANCE, "max_tokens": 8, "temperature": 0})
    full = (choice0(r) or {}).get("token_ids", [])
    if len(full) >= 3:
        r = gen(c, {"prompt": P_FRANCE, "max_tokens": 8, "temperature": 0, "stop_token_ids": [full[2]]})
        ch = choice0(r) or {}
        check("stop_token_ids: ends at that token with finish_reason stop",
              ch.get("finish_reason") == "stop" and ch.get("token_ids", [])[:2] == full[:2] and len(ch.get("token_ids", [])) in (2, 3),
              f"greedy ids {full}; {short(r)}")

    # ignore_eos runs to max_tokens
    r = gen(c, {"prompt": "Hi", "max_tokens": 12, "temperature": 0, "ignore_eos": True})
    ch = choice0(r) or {}
    check("ignore_eos: exactly max_tokens tokens, finish length", len(ch.get("token_ids", [])) == 12 and ch.get("finish_reason") == "length", short(r))

    # seeded sampling is reproducible; every sampling knob accepted
    p = {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 1.0, "top_p": 0.9, "top_k": 50, "min_p": 0.01,
         "repetition_penalty": 1.1, "presence_penalty": 0.2, "frequency_penalty": 0.2, "seed": 1234, "priority": 0}
    a, b = gen(c, p), gen(c, p)
    check("same seed, same sampled output (all sampling knobs set)",
          choice0(a) is not None and (choice0(a) or {}).get("token_ids") == (choice0(b) or {}).get("token_ids"), f"{short(a)} vs {short(b)}")

    # n = 2: greedy choices both equal the CLI's text; streaming pieces per index add up
    r = gen(c, {"prompt": P_FRANCE, "max_tokens": 8, "temperature": 0, "n": 2})
    res = result_of(r) or {}
    chs = sorted(res.get("choices", []), key=lambda x: x.get("index", -1))
    check("n=2 greedy: two choices, index 0 and 1, both == `cserve generate`",
          [x.get("index") for x in chs] == [0, 1] and all(x.get("text") == want for x in chs), f"cli {want!r}; {short(r)}")
    check("n=2: usage.completion_tokens == sum over choices",
          res.get("usage", {}).get("completion_tokens") == sum(len(x.get("token_ids", [])) for x in chs), short(res))
    id = c.request("generate", {"prompt": "Once upon a time", "max_tokens": 6, "temperature": 1.0, "seed": 99, "n": 2,
                                "stream": True, "ignore_eos": True})
    r = c.wait(id)
    res = result_of(r) or {}
    chs = sorted(res.get("choices", []), key=lambda x: x.get("index", -1))
    notes = c.notes.get(id, [])
    ok = [x.get("index") for x in chs] == [0, 1]
    for x in chs:
        mine = [n for n in notes if n.get("index") == x.get("index")]
        ok = ok and "".join(n.get("text", "") for n in mine) == x.get("text") and \
            [t for n in mine for t in n.get("token_ids", [])] == x.get("token_ids") and len(x.get("token_ids", [])) == 6
    check("n=2 stream (sampled): per-index notifications add up to each choice; 6 tokens each", ok, f"{short(notes)} / {short(r)}")

    # prefix cache: a repeated 48-token prompt reuses blocks; another cache_salt does not
    tag = f"{random.randrange(1 << 30)}"
    long_prompt = f"Session {tag}. " + "The weather today is sunny with a light breeze and clear skies. " * 4
    r1 = gen(c, {"prompt": long_prompt, "max_tokens": 1, "temperature": 0})
    r2 = gen(c, {"prompt": long_prompt, "max_tokens": 1, "temperature": 0})
    r3 = gen(c, {"prompt": long_prompt, "max_tokens": 1, "temperature": 0, "cache_salt": "other-tenant"})
    u1, u2, u3 = ((result_of(x) or {}).get("usage", {}) for x in (r1, r2, r3))
    check("prefix cache: first run cached_tokens 0, repeat cached_tokens >= 16, other cache_salt 0",
          u1.get("cached_tokens") == 0 and (u2.get("cached_tokens") or 0) >= 16 and u3.get("cached_tokens") == 0
          and u1.get("prompt_tokens", 0) >= 32, f"{short(u1)} {short(u2)} {short(u3)}")
    check("prefix cache: cached results are the same text",
          (choice0(r1) or {}).get("text") == (choice0(r2) or {}).get("text") == (choice0(r3) or {}).get("text"), f"{short(r1)} {short(r2)}")
    st = stats(c)
    check("stats: prefix_cache_hit_rate > 0 after a cache hit", st and 0 < st["prefix_cache_hit_rate"] <= 1, short(st))
    c.close()


def test_logprobs():
    c = S["main"].connect()
    # greedy with top-3: the chosen token is top[0]; sorted; streaming carries them too
    id = c.request("generate", {"prompt": P_FRANCE, "max_tokens": 6, "temperature": 0, "logprobs": 3, "stream": True})
    r = c.wait(id)
    ch = choice0(r) or {}
    lps = ch.get("logprobs") or []
    ids = ch.get("token_ids", [])
    ok = len(lps) == len(ids) and len(ids) > 0
    for tid, lp in zip(ids, lps):
        top = lp.get("top", [])
        ok = ok and lp.get("token_id") == tid and lp.get("logprob", 1) <= 1e-6 and len(top) == 3 \
            and top[0].get("token_id") == tid and abs(top[0].get("logprob", 9) - lp["logprob"]) < 1e-4 \
            and all(top[i]["logprob"] >= top[i + 1]["logprob"] for i in range(2))
    check("logprobs 3 greedy: one entry per token, token_id matches, 3 tops sorted, top[0] is the chosen token", ok, short(ch))
    notes = c.notes.get(id, [])
    nl = [x for n in notes for x in n.get("logprobs", [])]
    check("logprobs in stream notifications == the final response's", nl == lps, f"{short(notes)} vs {short(lps)}")

    # sampled (temperature 1, no truncation) token logprobs == prompt_logprobs of the same tokens
    ptoks = tokenize(c, "Once upon a time")
    r = gen(c, {"tokens": ptoks, "max_tokens": 6, "temperature": 1.0, "seed": 7, "logprobs": 1, "ignore_eos": True})
    ch = choice0(r) or {}
    g = ch.get("token_ids", [])
    glp = [x.get("logprob") for x in ch.get("logprobs") or []]
    r2 = gen(c, {"tokens": ptoks + g, "max_tokens": 0, "prompt_logprobs": len(ptoks)})
    pl = (result_of(r2) or {}).get("prompt_logprobs") or []
    ok = len(g) == 6 and len(glp) == 6 and [x.get("position") for x in pl] == list(range(len(ptoks), len(ptoks) + 6)) \
        and [x.get("token_id") for x in pl] == g
    diffs = [abs(a - x.get("logprob", 99)) for a, x in zip(glp, pl)] if ok else []
    check("prompt_logprobs: positions start..end, token_ids are the prompt's", ok, f"gen {short(r)}; scored {short(r2)}")
    check("generated-token logprobs (T=1) == prompt_logprobs of the same tokens (|diff| < 1e-2)",
          ok and max(diffs) < 1e-2, f"diffs {diffs}; gen {glp}; prompt_logprobs {short(pl)}")
    c.close()


def test_select():
    c = S["main"].connect()
    prompt = P_FRANCE
    choices = [" London", " Paris", " Berlin", " a large city"]
    r = c.call("select", {"prompt": prompt, "choices": choices})
    res = result_of(r) or {}
    ptoks = tokenize(c, prompt)
    sums = []
    for ch in choices:
        ctoks = tokenize(c, ch, add_special=False)
        rr = gen(c, {"tokens": ptoks + ctoks, "max_tokens": 0, "prompt_logprobs": len(ptoks)})
        pl = (result_of(rr) or {}).get("prompt_logprobs") or []
        ok = [x.get("position") for x in pl] == list(range(len(ptoks), len(ptoks) + len(ctoks))) and \
            [x.get("token_id") for x in pl] == ctoks
        check(f"select cross-check: prompt_logprobs of {ch!r} cover exactly its tokens", ok, short(rr))
        sums.append((sum(x.get("logprob", 0) for x in pl), len(ctoks)))
    rc = res.get("choices") or []
    best = max(range(len(sums)), key=lambda i: sums[i][0])
    ok = len(rc) == len(choices)
    for i, x in enumerate(rc[: len(choices)]):
        ok = ok and x.get("text") == choices[i] and x.get("n_tokens") == sums[i][1] \
            and abs(x.get("logprob", 99) - sums[i][0]) < 1e-2 \
            and abs(x.get("logprob_mean", 99) - x.get("logprob", 0) / max(1, x.get("n_tokens", 1))) < 1e-3
    check("select: per-choice logprob == sum of prompt_logprobs (|diff| < 1e-2), n_tokens, logprob_mean = logprob/n",
          ok, f"prompt_logprobs sums {sums}; select {short(r)}")
    check(f"select: index == argmax of the log-probabilities ({best}: {choices[best]!r})", res.get("index") == best, short(r))
    check("select: ' Paris' wins after 'The capital of France is'", res.get("index") == 1, short(r))

    r = c.call("select", {"messages": [{"role": "user", "content": "Is the sky blue? Answer yes or no."}],
                          "choices": ["Yes", "No"]})
    res = result_of(r) or {}
    check("select with messages: index in range, 2 scored choices", res.get("index") in (0, 1) and len(res.get("choices", [])) == 2, short(r))
    check_idle("after select", S["main"].addr, 5)
    c.close()


def test_in_flight_out_of_order():
    """Many requests in one write on one connection: short ones overtake a long one; ids 7 and "7"
    are different requests; two interleaved streams each add up."""
    c = S["main"].connect()
    reqs = [
        {"jsonrpc": "2.0", "id": "slow", "method": "generate",
         "params": {"prompt": "Count to one hundred:", "max_tokens": 48, "temperature": 0, "ignore_eos": True}},
        {"jsonrpc": "2.0", "id": "sa", "method": "generate",
         "params": {"prompt": PROMPTS4[1], "max_tokens": 4, "temperature": 0, "stream": True}},
        {"jsonrpc": "2.0", "id": "sb", "method": "generate",
         "params": {"prompt": PROMPTS4[2], "max_tokens": 4, "temperature": 0, "stream": True}},
        {"jsonrpc": "2.0", "id": 7, "method": "generate", "params": {"prompt": P_FRANCE, "max_tokens": 1, "temperature": 0}},
        {"jsonrpc": "2.0", "id": "7", "method": "health"},
        {"jsonrpc": "2.0", "id": 8, "method": "tokenize", "params": {"text": "Hello world"}},
        {"jsonrpc": "2.0", "id": -3, "method": "detokenize", "params": {"tokens": [19556]}},
    ]
    c.send_raw("".join(json.dumps(x) + "\n" for x in reqs))
    for x in reqs:
        c.wait(x["id"], 120)
    order = [k for kind, k in c.order if kind == "resp"]
    check("in flight: 7 responses, one per id", sorted(map(str, order)) == sorted(str(x["id"]) for x in reqs), short(order))
    check("in flight: responses out of order: the 48-token request answers last", order[-1] == "slow", short(order))
    check("in flight: health ('7') answered before the 48-token request",
          order.index("7") < order.index("slow"), short(order))
    check("in flight: id 7 (int) got the generate result, id '7' (string) the health result",
          "choices" in (result_of(c.responses[7]) or {}) and result_of(c.responses["7"]) == {"status": "ok"},
          f"{short(c.responses[7])} / {short(c.responses['7'])}")
    check("in flight: id -3 and 8 answered with their own results",
          result_of(c.responses[-3]) == {"text": "Hello"} and result_of(c.responses[8]) == {"tokens": [19556, 905]},
          f"{short(c.responses[-3])} / {short(c.responses[8])}")
    check("in flight: id 7 (1 token) == first token of the greedy text",
          (choice0(c.responses[7]) or {}).get("text") == expected(P_FRANCE, 1), short(c.responses[7]))
    for sid, p in (("sa", PROMPTS4[1]), ("sb", PROMPTS4[2])):
        ch = choice0(c.responses[sid]) or {}
        notes = c.notes.get(sid, [])
        check(f"in flight: interleaved stream {sid!r}: pieces add up, == `cserve generate`",
              ch.get("text") == expected(p, 4) and "".join(n.get("text", "") for n in notes) == ch.get("text"),
              f"cli {expected(p, 4)!r}; {short(notes)}; {short(c.responses[sid])}")
    r = c.call("health")
    check("in flight: the connection keeps working afterwards", result_of(r) == {"status": "ok"}, short(r))
    c.close()


def test_seeds():
    c = S["main"].connect()
    base = {"prompt": "Hi", "max_tokens": 1, "temperature": 1.0}
    # seeds are integers below 2^53: 2^53 itself is refused, because 2^53 + 1 arrives as the same
    # double and would otherwise be silently rounded to it
    for raw in ("9007199254740991", "0"):
        c.send_raw('{"jsonrpc":"2.0","id":1,"method":"generate","params":{"prompt":"Hi","max_tokens":1,"seed":%s}}\n' % raw)
        r = c.wait(1)
        c.responses.clear()
        check(f"seed {raw} accepted", choice0(r) is not None, short(r))
    for raw in ("9007199254740992", "9007199254740993", "9007199254740994", "18446744073709551615", "18446744073709551616",
                "1e300", "-1", "1.5", '"42"', "true"):
        c.send_raw('{"jsonrpc":"2.0","id":2,"method":"generate","params":{"prompt":"Hi","max_tokens":1,"seed":%s}}\n' % raw)
        r = c.wait(2)
        c.responses.clear()
        check(f"seed {raw} rejected: -32602 naming seed", is_error(r, -32602, "seed", 2), short(r))
    # 2^53 and the neighbours that round to it in a double must differ
    a = gen(c, dict(base, seed=12345, max_tokens=4))
    b = gen(c, dict(base, seed=12345, max_tokens=4))
    check("seed 12345 twice: same tokens", choice0(a) and (choice0(a) or {}).get("token_ids") == (choice0(b) or {}).get("token_ids"),
          f"{short(a)} / {short(b)}")
    c.close()


# ----------------------------------------------------------------------------------------
# tests: cancel, disconnect, vanished clients


def _gen_tokens(c):
    st = stats(c)
    return st["generated_tokens"] if st else None


def test_cancel_mid_stream():
    addr = S["main"].addr
    c, side = Client(addr), Client(addr)
    g0 = _gen_tokens(side)
    id = c.request("generate", {"prompt": "Write a long story about a dragon.", "max_tokens": 900, "temperature": 0,
                                "ignore_eos": True, "stream": True})
    t0 = time.monotonic()
    while len(c.notes.get(id, [])) < 2:
        c.read_msg(30)
    st = stats(side)
    check("cancel: while streaming, stats show running 1 and blocks used", st and st["running"] == 1 and st["kv_blocks_used"] > 0, short(st))
    cid = c.request("cancel", {"id": id})
    r = c.wait(cid, 10)
    check("cancel: {cancelled: true}", result_of(r) == {"cancelled": True}, short(r))
    r = c.wait(id, 10)
    ch = choice0(r) or {}
    n = len(ch.get("token_ids", []))
    check("cancel: the stream ends with finish_reason 'cancelled' and fewer than max_tokens tokens",
          ch.get("finish_reason") == "cancelled" and 2 <= n < 900, short(r))
    notes = c.notes.get(id, [])
    check("cancel: notifications received add up to the final token_ids",
          [t for x in notes for t in x.get("token_ids", [])] == ch.get("token_ids"), f"{len(notes)} notes; {short(r)}")
    st = check_idle("cancel", addr, 5)
    g1 = st["generated_tokens"] if st else None
    check("cancel: generated_tokens stopped growing near the cancel point",
          g0 is not None and g1 is not None and g1 - g0 <= n + 5, f"before {g0}, after {g1}, final {n} tokens, {time.monotonic() - t0:.1f}s")
    r = c.call("cancel", {"id": id})
    check("cancel of a finished request: {cancelled: false}", result_of(r) == {"cancelled": False}, short(r))
    r = c.call("cancel", {"id": "never-sent"})
    check("cancel of an unknown id: {cancelled: false}", result_of(r) == {"cancelled": False}, short(r))

    # cancel a queued-or-running non-streaming request right after sending it
    id2 = c.request("generate", {"prompt": "Tell me about cats.", "max_tokens": 900, "temperature": 0, "ignore_eos": True})
    cid = c.request("cancel", {"id": id2})
    r = c.wait(cid, 10)
    r2 = c.wait(id2, 10)
    check("cancel right after submit: cancelled true and finish_reason 'cancelled'",
          result_of(r) == {"cancelled": True} and (choice0(r2) or {}).get("finish_reason") == "cancelled", f"{short(r)} / {short(r2)}")
    check_idle("cancel right after submit", addr, 5)
    c.close()
    side.close()


def test_disconnect_mid_stream():
    addr = S["main"].addr
    side = Client(addr)
    g0 = _gen_tokens(side)
    c = Client(addr)
    id = c.request("generate", {"prompt": "Write a long story about a robot.", "max_tokens": 900, "temperature": 0,
                                "ignore_eos": True, "stream": True})
    while len(c.notes.get(id, [])) < 2:
        c.read_msg(30)
    got = sum(len(x.get("token_ids", [])) for x in c.notes[id])
    c.close()
    t0 = time.monotonic()
    st = check_idle("disconnect mid-stream", addr, 5)
    g1 = st["generated_tokens"] if st else None
    check("disconnect mid-stream: generation stopped (generated_tokens grew far less than 900)",
          g0 is not None and g1 is not None and g1 - g0 < 200, f"before {g0}, after {g1}, streamed {got} before closing, idle after {time.monotonic() - t0:.1f}s")
    side.close()


def test_vanished_client_queue():
    addr = S["main"].addr
    side = Client(addr)
    g0 = _gen_tokens(side)
    c = Client(addr)
    c.send_raw("".join(json.dumps({"jsonrpc": "2.0", "id": i, "method": "generate",
                                   "params": {"prompt": f"Story number {i}: once upon a time", "max_tokens": 200,
                                              "temperature": 0, "ignore_eos": True}}) + "\n" for i in range(20)))
    deadline = time.monotonic() + 15
    st = None
    while time.monotonic() < deadline:
        st = stats(side)
        if st and st["running"] + st["waiting"] >= 20:
            break
        time.sleep(0.02)
    check("vanished client: all 20 requests accepted (running + waiting == 20)", st and st["running"] + st["waiting"] == 20, short(st))
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # drop hard (RST)
    c.close()
    st = check_idle("vanished client", addr, 10)
    g1 = st["generated_tokens"] if st else None
    check("vanished client: generated_tokens grew far less than 20 x 200 (< 1000)",
          g0 is not None and g1 is not None and g1 - g0 < 1000, f"before {g0}, after {g1}")
    side.close()


# ----------------------------------------------------------------------------------------
# tests: concurrency


def test_concurrent_streams(n_clients=200):
    addr = S["main"].addr
    want = {p: expected(p, 4) for p in PROMPTS4}
    barrier = threading.Barrier(n_clients)
    results = [None] * n_clients

    def one(i):
        p = PROMPTS4[i % len(PROMPTS4)]
        try:
            c = Client(addr, 30)
            barrier.wait(30)
            id = c.request("generate", {"prompt": p, "max_tokens": 4, "temperature": 0, "stream": True}, id=f"c{i}")
            r = c.wait(id, 150)
            notes = c.notes.get(id, [])
            ch = choice0(r) or {}
            ok = ch.get("text") == want[p] and "".join(x.get("text", "") for x in notes) == ch.get("text") and \
                [t for x in notes for t in x.get("token_ids", [])] == ch.get("token_ids") and \
                ch.get("finish_reason") in ("length", "stop")
            results[i] = (ok, f"prompt {p!r}: cli {want[p]!r}; notes {short(notes, 300)}; final {short(r, 300)}")
            c.close()
        except Exception as e:  # noqa: BLE001
            results[i] = (False, f"{type(e).__name__}: {e}")

    t0 = time.monotonic()
    th = [threading.Thread(target=one, args=(i,)) for i in range(n_clients)]
    for t in th:
        t.start()
    for t in th:
        t.join(200)
    dt = time.monotonic() - t0
    bad = [(i, r) for i, r in enumerate(results) if not r or not r[0]]
    check(f"{n_clients} concurrent streaming clients: all complete, each == `cserve generate` ({dt:.1f}s)",
          not bad, f"{len(bad)} bad, first: {bad[:3]}")
    check_idle("after the concurrent clients", addr, 10)


# ----------------------------------------------------------------------------------------
# tests: bad input


class Background:
    """A well-behaved client that keeps generating (greedy, checked) while others misbehave."""

    def __init__(self, addr):
        self.addr, self.stop, self.done, self.errors = addr, threading.Event(), 0, []
        self.want = expected(BG_PROMPT, 6)
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        try:
            c = Client(self.addr)
            while not self.stop.is_set():
                id = c.request("generate", {"prompt": BG_PROMPT, "max_tokens": 6, "temperature": 0, "stream": True})
                r = c.wait(id, 60)
                text = (choice0(r) or {}).get("text")
                if text != self.want or "".join(x.get("text", "") for x in c.notes.pop(id, [])) != text:
                    self.errors.append(short(r))
                else:
                    self.done += 1
            c.close()
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"{type(e).__name__}: {e}")

    def finish(self):
        self.stop.set()
        self.t.join(90)
        check(f"bad input: a well-behaved client meanwhile completed {self.done} correct greedy generations, no errors",
              self.done >= 1 and not self.errors and not self.t.is_alive(), f"errors {self.errors[:3]}")


def expect_error(name, raw, codes, param=None, id="any", same_conn_ok=True, may_close=False):
    """Sends one raw line on a fresh connection and checks the error; then checks that the same
    connection still answers health (unless may_close and the server closed it)."""
    srv = S["main"]
    c = srv.connect()
    try:
        c.send_raw(raw)
        try:
            msgs = []
            deadline = time.monotonic() + 15
            while not any(isinstance(m, dict) and ("error" in m or "result" in m) for m in msgs):
                msgs.append(c.read_msg(max(0.001, deadline - time.monotonic())))
            r = msgs[-1]
        except Closed:
            r = "closed"
        except TimeoutError:
            r = "no answer in 15 s"
        if r == "closed" and may_close:
            check(f"{name}: connection closed", True)
        else:
            check(f"{name}: error {codes}" + (f" naming {param!r}" if param else "") + (f", id {id!r}" if id != "any" else ""),
                  is_error(r, codes, param, id), f"sent {short(raw, 200)!r}; got {short(r)}")
        if same_conn_ok and not c.closed:
            try:
                h = c.call("health", timeout=10)
            except (Closed, TimeoutError) as e:
                h = f"{type(e).__name__}: {e}"
            if not (may_close and h == "Closed: connection closed by the server"):
                check(f"{name}: the same connection still answers health", result_of(h) == {"status": "ok"}, short(h))
    finally:
        c.close()
    if not srv.alive():
        check(f"{name}: server still running", False, f"exit {srv.proc.returncode}; stderr {srv.tail()}")
        raise SystemExit("the main server died")


def req(method, params="__absent__", id=1, **extra):
    m = {"jsonrpc": "2.0", "id": id, "method": method}
    if params != "__absent__":
        m["params"] = params
    m.update(extra)
    return json.dumps(m) + "\n"


def test_bad_input():
    srv = S["main"]
    bg = Background(srv.addr)
    V = VOCAB
    try:
        # JSON level
        expect_error("malformed JSON", '{"jsonrpc":"2.0","id":1,"method":"health"\n', -32700, id=None)
        expect_error("garbage line", "hello there\n", -32700, id=None)
        expect_error("truncated JSON", '{"jsonrpc":"2.0","id":1,"method":\n', -32700, id=None)
        expect_error("data after the JSON value", '{"jsonrpc":"2.0","id":1,"method":"health"} x\n', -32700, id=None)
        expect_error("a raw control byte (0x01) inside a string",
                     '{"jsonrpc":"2.0","id":1,"method":"tokenize","params":{"text":"a\x01b"}}\n', -32700, id=None)
        expect_error("a key twice in params", '{"jsonrpc":"2.0","id":7,"method":"tokenize","params":{"text":"a",'
                     '"text":"b"}}\n', -32602, param="text", id=7)
        expect_error("\\u0000 in a prompt", '{"jsonrpc":"2.0","id":8,"method":"tokenize","params":{"text":"a\\u0000b"}}\n',
                     -32602, param="params", id=8)
        expect_error("invalid UTF-8 in a string (0xff 0xfe)",
                     b'{"jsonrpc":"2.0","id":1,"method":"tokenize","params":{"text":"a\xff\xfeb"}}\n', (-32700, -32600, -32602))
        expect_error("invalid UTF-8: overlong encoding in a prompt",
                     b'{"jsonrpc":"2.0","id":1,"method":"generate","params":{"prompt":"\xc0\xafx","max_tokens":1}}\n',
                     (-32700, -32600, -32602))
        expect_error("invalid UTF-8: truncated sequence at the end of a string",
                     b'{"jsonrpc":"2.0","id":1,"method":"tokenize","params":{"text":"ab\xe6\x97"}}\n', (-32700, -32600, -32602))
        # request level
        expect_error("JSON array batch", "[" + req("health").strip() + "]\n", -32600, id=None)
        expect_error("empty array", "[]\n", -32600, id=None)
        expect_error("a bare number", "42\n", -32600, id=None)
        expect_error("missing jsonrpc", '{"id":1,"method":"health"}\n', -32600)
        expect_error("jsonrpc 1.0", '{"jsonrpc":"1.0","id":1,"method":"health"}\n', -32600)
        expect_error("missing method", '{"jsonrpc":"2.0","id":1}\n', -32600)
        expect_error("method not a string", '{"jsonrpc":"2.0","id":1,"method":5}\n', -32600)
        for bad_id in ("{}", "[1]", "true", "1.5"):
            expect_error(f"id of a wrong type ({bad_id})", '{"jsonrpc":"2.0","id":%s,"method":"health"}\n' % bad_id, -32600, id=None)
        expect_error("unknown method", req("frobnicate", {}, id=11), -32601, id=11)
        expect_error("unknown method (string id)", req("rpc.discover", id="abc"), -32601, id="abc")
        # params
        expect_error("generate params null", req("generate", None, id=3), -32602, id=3)
        expect_error("generate params absent", req("generate", id=3), -32602, id=3)
        expect_error("generate params {}", req("generate", {}, id=3), -32602, id=3)
        expect_error("generate params an array", req("generate", ["hi"], id=3), -32602, id=3)
        expect_error("tokenize params {}", req("tokenize", {}), -32602, "text")
        expect_error("tokenize params null", req("tokenize", None), -32602)
        expect_error("detokenize params {}", req("detokenize", {}), -32602, "tokens")
        expect_error("cancel params {}", req("cancel", {}), -32602, "id")
        expect_error("select without choices", req("select", {"prompt": "x"}), -32602, "choices")
        expect_error("select with empty choices", req("select", {"prompt": "x", "choices": []}), -32602, "choices")
        expect_error("select choices not strings", req("select", {"prompt": "x", "choices": [1, 2]}), -32602, "choices")
        expect_error("apply_chat_template messages not an array", req("apply_chat_template", {"messages": "hi"}), -32602, "messages")
        expect_error("empty prompt", req("generate", {"prompt": "", "max_tokens": 1}), -32602, "prompt")
        expect_error("empty tokens", req("generate", {"tokens": [], "max_tokens": 1}), -32602, "tokens")
        expect_error("prompt and tokens both", req("generate", {"prompt": "x", "tokens": [1], "max_tokens": 1}), -32602)
        wrong = [("prompt", 5), ("prompt", None), ("tokens", "abc"), ("tokens", ["a"]), ("tokens", [1.5]),
                 ("messages", "hi"), ("messages", [{"role": "user"}]), ("messages", [{"role": 1, "content": "x"}]),
                 ("max_tokens", "10"), ("max_tokens", 1.5), ("temperature", "hot"), ("top_p", "x"), ("top_k", "x"),
                 ("stream", "yes"), ("stop", 5), ("stop", [1]), ("stop_token_ids", ["a"]), ("n", "2"),
                 ("logprobs", True), ("ignore_eos", 1), ("priority", "high"), ("cache_salt", 5),
                 ("prompt_logprobs", "x")]
        for p, v in wrong:
            params = {"prompt": "Hi", "max_tokens": 1}
            if p in ("tokens", "messages"):
                del params["prompt"]
            params[p] = v
            expect_error(f"wrong type {p}={json.dumps(v)}", req("generate", params, id=21), -32602, p, id=21)
        ranges = [("max_tokens", -1), ("temperature", -0.5), ("top_p", 0), ("top_p", 1.5), ("presence_penalty", 3),
                  ("min_p", -0.1), ("min_p", 1.5), ("repetition_penalty", 0), ("n", 0), ("logprobs", 21),
                  ("logprobs", -1), ("prompt_logprobs", -1)]
        for p, v in ranges:
            expect_error(f"out of range {p}={v}", req("generate", {"prompt": "Hi", "max_tokens": 1, p: v}, id=22), -32602, p, id=22)
        # stop strings the matcher would refuse are refused up front (they used to end the choice)
        for stop in ("", "x" * 257, ["ok", "x" * 300]):
            expect_error(f"stop {short(json.dumps(stop), 30)}", req("generate", {"prompt": "Hi", "max_tokens": 1, "stop": stop}),
                         -32602, "stop")
        expect_error("a message with the key content twice",
                     '{"jsonrpc":"2.0","id":23,"method":"generate","params":{"messages":[{"role":"user","content":"a",'
                     '"content":"b"}],"max_tokens":1}}\n', -32602, "messages", id=23)
        expect_error("a message with the role ''",
                     req("generate", {"messages": [{"role": "", "content": "x"}], "max_tokens": 1}), -32602, "messages")
        # out-of-range numbers are printed exactly (not 9.0072e+15 against a bound shown the same)
        c = srv.connect()
        try:
            r = c.call("generate", {"prompt": "Hi", "max_tokens": 1, "seed": 2 ** 53})
            m = ((r or {}).get("error") or {}).get("message", "")
            check("seed 2^53: the message shows 9007199254740992 against [0, 9007199254740991], no exponent",
                  is_error(r, -32602, "seed") and "9007199254740992 " in m and "9007199254740991]" in m and "e+" not in m, short(r))
        finally:
            c.close()
        expect_error("token id -1", req("generate", {"tokens": [19556, -1], "max_tokens": 1}), -32602, "tokens")
        expect_error(f"token id {V} (== vocab size)", req("generate", {"tokens": [19556, V], "max_tokens": 1}), -32602, "tokens")
        expect_error("token id 2^31", req("generate", {"tokens": [2 ** 31], "max_tokens": 1}), -32602, "tokens")
        expect_error("stop_token_ids outside the vocabulary", req("generate", {"prompt": "Hi", "max_tokens": 1, "stop_token_ids": [V]}),
                     -32602, "stop_token_ids")
        expect_error("detokenize token id -1", req("detokenize", {"tokens": [-1]}), -32602, "tokens")
        expect_error(f"detokenize token id {V}", req("detokenize", {"tokens": [V]}), -32602, "tokens")
        over = MAX_MODEL_LEN + 100
        expect_error(f"tokens longer than the context ({over} > {MAX_MODEL_LEN})",
                     req("generate", {"tokens": [19556] * over, "max_tokens": 1}), -32602, "tokens")
        expect_error(f"prompt longer than the context (~{over} tokens)",
                     req("generate", {"prompt": " hello" * over, "max_tokens": 1}), -32602, "prompt")
        expect_error("messages longer than the context",
                     req("generate", {"messages": [{"role": "user", "content": " hello" * over}], "max_tokens": 1}), -32602, "messages")
        expect_error("select prompt longer than the context",
                     req("select", {"prompt": " hello" * over, "choices": ["a", "b"]}), -32602, "prompt")
        # nesting 100,000 deep (a recursive parser would overflow its stack)
        deep = 100000
        expect_error("array nesting 100,000 deep", "[" * deep + "]" * deep + "\n", (-32700, -32600), id=None, may_close=True)
        expect_error("object nesting 100,000 deep inside params",
                     '{"jsonrpc":"2.0","id":1,"method":"generate","params":{"prompt":' + '{"a":' * deep + "1" + "}" * deep + "}}\n",
                     (-32700, -32600, -32602), may_close=True)
        test_notifications()
        test_line_too_large()
        test_many_connections(others=1)  # the background client's request
    finally:
        bg.finish()
    check_idle("after all the bad input", srv.addr, 10)
    alive_check("after all the bad input", srv)


def test_notifications():
    """Requests without an id get no response, not even an error."""
    c = S["main"].connect()
    c.send_raw('{"jsonrpc":"2.0","method":"health"}\n')
    c.send_raw('{"jsonrpc":"2.0","method":"frobnicate","params":{}}\n')
    c.send_raw('{"jsonrpc":"2.0","method":"tokenize","params":{"text":"x"}}\n')
    c.send_raw('{"jsonrpc":"2.0","method":"generate","params":{"prompt":5}}\n')
    r = c.call("health", id=99)
    first = c.order[0] if c.order else None
    check("notifications (no id): no response; the next response is the next request's",
          result_of(r) == {"status": "ok"} and first == ("resp", 99) and not c.null_id and len(c.responses) == 1,
          f"order {c.order}; null-id {short(c.null_id)}; others {short(c.other)}")
    check("notifications: nothing more arrives within 0.5 s", c.quiet(0.5), short(c.responses))
    c.close()


def _send_big(c, data, out):
    try:
        c.sock.sendall(data)
        out.append("sent")
    except OSError as e:
        out.append(f"{type(e).__name__}")


def test_line_too_large():
    srv = S["main"]
    c = srv.connect()
    big = '{"jsonrpc":"2.0","id":1,"method":"tokenize","params":{"text":"' + "a" * (2 << 20) + '"}}\n'
    out = []
    t = threading.Thread(target=_send_big, args=(c, big.encode(), out), daemon=True)
    t.start()
    r = None
    try:
        r = c.wait_null(15)
    except Closed:
        r = "closed"
    except TimeoutError:
        r = "no answer in 15 s"
    closed = c.wait_closed(10) if r != "closed" else True
    t.join(10)
    ok = (is_error(r, -32002, id=None) or r == "closed") and closed
    check("2 MiB line: -32002 with id null (or a reset), then the connection is closed",
          ok, f"got {short(r)}; closed {closed}; sender {out}")
    check("2 MiB line: -32002 response actually received before the close", is_error(r, -32002, id=None), f"got {short(r)}")
    c.close()
    alive_check("after the 2 MiB line", srv)


def test_many_connections(n=1000, others=0):
    """1,000 connections opened and dropped: idle, half a line, a full request, a generate.
    `others`: requests a well-behaved client keeps running meanwhile (one at a time)."""
    srv = S["main"]
    side = srv.connect()
    g0 = _gen_tokens(side)
    socks = []
    t0 = time.monotonic()
    refused = 0
    for i in range(n):
        try:
            s = socket.create_connection(srv.addr, timeout=5)
        except OSError:
            refused += 1
            continue
        k = i % 4
        try:
            if k == 1:
                s.sendall(b'{"jsonrpc":"2.0","id":1,"meth')
            elif k == 2:
                s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"health"}\n')
            elif k == 3 and i % 20 == 3:
                s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "generate",
                                      "params": {"prompt": f"Item {i}", "max_tokens": 100, "ignore_eos": True,
                                                 "stream": True}}).encode() + b"\n")
        except OSError:
            pass
        if i % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        socks.append(s)
        if len(socks) >= 250:  # keep 250 open at once, then drop them
            for x in socks:
                x.close()
            socks = []
    for x in socks:
        x.close()
    check(f"1,000 connections opened and dropped ({time.monotonic() - t0:.1f}s, {refused} refused)", refused == 0, f"{refused} refused")
    alive_check("after 1,000 dropped connections", srv)
    st = check_idle("after 1,000 dropped connections", srv.addr, 10, others)
    g1 = st["generated_tokens"] if st else None
    check("after 1,000 dropped connections: their 50 generate requests stopped early (< 50 x 100 / 2 tokens)",
          g0 is not None and g1 is not None and g1 - g0 < 2500, f"before {g0}, after {g1}")
    side.close()


# ----------------------------------------------------------------------------------------
# tests: other server instances


def test_auth():
    srv = S["auth"]
    key = S["auth_key"]
    c = srv.connect()
    r = c.call("health")
    check("auth: health before auth -> -32003", is_error(r, -32003), short(r))
    check("auth: ... and the connection is closed", c.wait_closed(5), f"still open; got {short(c.order)}")
    c.close()
    c = srv.connect()
    r = c.call("auth", {"key": key + "x"})
    check("auth: wrong key -> -32003 and closed", is_error(r, -32003) and c.wait_closed(5), short(r))
    c.close()
    c = srv.connect()
    c.send_raw("not json\n")
    try:
        r = c.wait_null(10)
    except Closed:
        r = "closed"
    check("auth: unauthenticated garbage -> an error (-32700 or -32003) or close",
          r == "closed" or is_error(r, (-32700, -32003)), short(r))
    c.close()
    c = srv.connect()
    r = c.call("auth", {"key": key})
    check("auth: right key -> a result", "result" in r and "error" not in r, short(r))
    r = c.call("health")
    check("auth: then health ok", result_of(r) == {"status": "ok"}, short(r))
    r = gen(c, {"prompt": P_FRANCE, "max_tokens": 8, "temperature": 0})
    check("auth: generate greedy == `cserve generate`", (choice0(r) or {}).get("text") == expected(P_FRANCE, 8), short(r))

    # --max-line-bytes 4096: 3,000 bytes fine, 6,000 bytes -> -32002 and closed
    r = c.call("tokenize", {"text": "b" * 3000})
    check("max-line-bytes 4096: a 3,000-byte line is served", isinstance((result_of(r) or {}).get("tokens"), list), short(r))
    c.send_raw(req("tokenize", {"text": "c" * 6000}, id=50))
    try:
        r = c.wait_null(10)
    except Closed:
        r = "closed"
    except TimeoutError:
        r = "no answer"
    check("max-line-bytes 4096: a 6,000-byte line -> -32002 id null", is_error(r, -32002, id=None),
          f"got {short(r)}; response to its id 50: {short(c.responses.get(50))}")
    check("max-line-bytes 4096: ... and the connection is closed", c.closed or c.wait_closed(5), "still open")
    c.close()

    # --max-queued 2: a burst of 100 gets -32001 for some, every accepted one completes
    c = srv.connect()
    c.call("auth", {"key": key})
    c.send_raw("".join(req("generate", {"prompt": "Hi", "max_tokens": 2, "temperature": 0}, id=100 + i) for i in range(100)))
    rs = [c.wait(100 + i, 120) for i in range(100)]
    over = [r for r in rs if is_error(r, -32001)]
    fine = [r for r in rs if choice0(r) and len(choice0(r).get("token_ids", [])) >= 1]
    check("max-queued 2: a burst of 100 -> some -32001 overloaded, the rest complete, nothing else",
          len(over) > 0 and len(fine) > 0 and len(over) + len(fine) == 100,
          f"{len(over)} overloaded, {len(fine)} done, other: {short([r for r in rs if r not in over and r not in fine][:3])}")
    c.close()
    ok, st = wait_idle_auth(srv, key)
    check("auth server: idle afterwards, no blocks used", ok, short(st))


def wait_idle_auth(srv, key, timeout=10):
    c = srv.connect()
    c.call("auth", {"key": key})
    deadline = time.monotonic() + timeout
    while True:
        st = stats(c)
        if st and st["running"] == 0 and st["waiting"] == 0 and st["kv_blocks_used"] == 0:
            c.close()
            return True, st
        if time.monotonic() > deadline:
            c.close()
            return False, st
        time.sleep(0.1)


def test_vanished_client_queued_never_run():
    """On the unix server (--max-num-seqs 4): 20 requests, 4 run and 16 wait; the client vanishes;
    the 16 waiting ones are never prefilled and nothing keeps running."""
    srv = S["unix"]
    side = Client(srv.socket_path)
    st0 = stats(side)
    c = Client(srv.socket_path)
    plen = None
    reqs = []
    for i in range(20):
        p = f"Queued story {i}: the"
        reqs.append(json.dumps({"jsonrpc": "2.0", "id": i, "method": "generate",
                                "params": {"prompt": p, "max_tokens": 200, "temperature": 0, "ignore_eos": True}}) + "\n")
        plen = max(plen or 0, len(tokenize(side, p)))
    c.send_raw("".join(reqs))
    deadline = time.monotonic() + 10
    st = None
    while time.monotonic() < deadline:
        st = stats(side)
        if st and st["running"] == 4 and st["waiting"] == 16 and st["generated_tokens"] > st0["generated_tokens"]:
            break
        time.sleep(0.02)
    check("queued: 4 running and 16 waiting (--max-num-seqs 4), decoding started", st and st["running"] == 4 and st["waiting"] == 16,
          short(st))
    c.close()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10:
        st1 = stats(side)
        if st1["running"] == 0 and st1["waiting"] == 0 and st1["kv_blocks_used"] == 0:
            break
        time.sleep(0.1)
    check("queued: after the client vanished, running == waiting == kv_blocks_used == 0", st1["running"] == 0 and
          st1["waiting"] == 0 and st1["kv_blocks_used"] == 0, short(st1))
    dp = st1["prompt_tokens"] - st0["prompt_tokens"]
    dg = st1["generated_tokens"] - st0["generated_tokens"]
    check(f"queued: the 16 waiting requests never ran (prompt tokens computed {dp} <= 4 x {plen})", dp <= 4 * plen,
          f"before {short(st0)}; after {short(st1)}")
    check(f"queued: generated tokens {dg} far below 20 x 200 (< 4 x 200)", dg < 800, f"before {short(st0)}; after {short(st1)}")
    side.close()


def test_sigterm_drains():
    """SIGTERM on the main server with a short request in flight: the request completes with its
    full greedy text, the listener closes, the process exits 0 within 5 s."""
    srv = S["main"]
    c = srv.connect()
    id = c.request("generate", {"prompt": P_FRANCE, "max_tokens": 8, "temperature": 0, "stream": True})
    c.read_msg(30)  # the first token: the request is running
    srv.proc.send_signal(signal.SIGTERM)
    try:
        r = c.wait(id, 10)
    except (Closed, TimeoutError) as e:
        r = f"{type(e).__name__}: {e}"
    check("SIGTERM: an in-flight 8-token request still completes with the greedy text",
          (choice0(r) or {}).get("text") == expected(P_FRANCE, 8), short(r))
    time.sleep(0.2)
    try:
        x = socket.create_connection(srv.addr, timeout=2)
        x.close()
        refused = False
    except OSError:
        refused = True
    check("SIGTERM: new connections are refused", refused, "connect succeeded after SIGTERM")
    rc, dt = srv.terminate(5)
    check("main server: SIGTERM -> exit code 0 within 5 s", rc == 0, srv.exit_text(rc, dt))
    c.close()


def test_unix_socket():
    srv = S["unix"]
    c = Client(srv.socket_path)
    r = c.call("health")
    check("unix socket: health ok", result_of(r) == {"status": "ok"}, short(r))
    id = c.request("generate", {"prompt": P_FRANCE, "max_tokens": 8, "temperature": 0, "stream": True})
    r = c.wait(id)
    want = expected(P_FRANCE, 8)
    check("unix socket: streaming greedy == `cserve generate`",
          (choice0(r) or {}).get("text") == want and "".join(x.get("text", "") for x in c.notes.get(id, [])) == want,
          f"cli {want!r}; {short(r)}")
    # SIGTERM with a stream in flight (--shutdown-timeout 1): exit 0 within 5 s; the client sees an end
    id = c.request("generate", {"prompt": "Write a long story.", "max_tokens": 900, "ignore_eos": True, "stream": True})
    while len(c.notes.get(id, [])) < 1:
        c.read_msg(30)
    rc, dt = srv.terminate(5)
    check("unix server: SIGTERM with a request in flight -> exit code 0 within 5 s", rc == 0,
          srv.exit_text(rc, dt))
    ended = c.wait_closed(5) or _key(id) in c.responses
    r = c.responses.get(id)
    check("unix server: the in-flight client saw its stream end (a final response, finish_reason cancelled or "
          "length, or the connection closed)", ended and (r is None or (choice0(r) or {}).get("finish_reason") in
                                                          ("cancelled", "length")), short(r))
    c.close()


# ----------------------------------------------------------------------------------------
# main

TESTS = [test_basic_methods, test_generate_greedy_matches_cli, test_generate_options, test_logprobs, test_select,
         test_in_flight_out_of_order, test_seeds, test_cancel_mid_stream, test_disconnect_mid_stream,
         test_vanished_client_queue, test_concurrent_streams, test_bad_input, test_auth,
         test_vanished_client_queued_never_run, test_unix_socket, test_sigterm_drains]


def main():
    global VOCAB
    only = None
    if "-k" in sys.argv:
        only = sys.argv[sys.argv.index("-k") + 1]
    if not os.path.isfile(MODEL):
        print(f"model {MODEL} absent: skipping")
        return 77
    h = subprocess.run([BIN, "serve", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if h.returncode != 0:
        print(f"FAIL  `{BIN} serve --help` exited {h.returncode}: {h.stdout.decode()[-300:]}")
        return 1
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass

    t_start = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="cserve_rpc_")
    S["auth_key"] = f"k-{random.randrange(1 << 40):x}"
    S["main"] = Server("main", ["--max-model-len", str(MAX_MODEL_LEN)])
    S["auth"] = Server("auth", ["--api-key", S["auth_key"], "--max-line-bytes", "4096", "--max-queued", "2",
                                "--kv-cache-memory", str(64 << 20), "--max-model-len", "512"])
    S["unix"] = Server("unix", ["--kv-cache-memory", str(64 << 20), "--max-model-len", "1024", "--shutdown-timeout", "1",
                                "--max-num-seqs", "4"],
                       socket_path=os.path.join(tmp, "cserve.sock"))
    rc = 1
    try:
        VOCAB = vocab_size()
        for p in PROMPTS4:  # the greedy references, while the servers load
            expected(p, 4)
        expected(P_FRANCE, 8)
        for name in ("main", "auth", "unix"):
            ok = S[name].wait_ready(60)
            check(f"{name} server: 'ready: model' on stderr", ok, f"exit {S[name].proc.poll()}; args {S[name].args}; stderr {S[name].tail()}")
            if not ok:
                raise SystemExit(f"{name} server did not start")
        for t in TESTS:
            if only and only not in t.__name__:
                continue
            print(f"--- {t.__name__}", flush=True)
            t0 = time.monotonic()
            try:
                t()
            except SystemExit:
                raise
            except Exception as e:  # noqa: BLE001
                check(f"{t.__name__} ran to the end", False, f"{type(e).__name__}: {e}\n{traceback.format_exc()[-1500:]}")
            print(f"    ({time.monotonic() - t0:.1f}s)", flush=True)
        print("--- shutdown", flush=True)
        for name in ("auth",):
            rc_, dt = S[name].terminate(5)
            check(f"{name} server: SIGTERM -> exit code 0 within 5 s", rc_ == 0, S[name].exit_text(rc_, dt))
        for name in ("main", "unix"):  # already terminated by their tests unless those failed early
            if S[name].alive():
                S[name].terminate(5)
    except SystemExit as e:
        check("run completed", False, str(e))
    finally:
        for name in ("main", "auth", "unix"):
            if name in S:
                S[name].kill()
        try:
            sp = os.path.join(tmp, "cserve.sock")
            if os.path.exists(sp):
                os.unlink(sp)
            os.rmdir(tmp)
        except OSError:
            pass
    print(f"\n{_checks} checks, {len(_failures)} failed, {time.monotonic() - t_start:.1f}s")
    for f in _failures:
        print(f"  FAILED: {short(f, 1500)}")
    rc = 1 if _failures else 0
    return rc


if __name__ == "__main__":
    sys.exit(main())
