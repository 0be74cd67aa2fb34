#!/usr/bin/env python3
"""End-to-end tests of the HTTP/OpenAI API of `cserve serve` over real sockets.

Driven with the official `openai` client, raw sockets (framing, limits, timeouts, pipelining,
disconnects) and `prometheus_client`'s parser for /metrics; JSON outputs are checked with
`jsonschema`. Environment: CSERVE_BIN, CSERVE_MODEL. Servers (each on a free HTTP port):
  main     --http-request-timeout 2 (generation, errors, raw HTTP)
  auth     --api-key, --served-model-name
  busy     --max-queued 1 --max-num-seqs 1 (overload -> 503)
  metrics  fresh: a known set of requests, then /metrics cross-checked against their usage
  fifo     --model is a FIFO: /health 503 while loading, then garbage -> non-zero exit
Prints one line per check; exits 1 when any check fails. Options: -k SUBSTR, -v.
"""
import json
import os
import random
import resource
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rpc_e2e as R  # noqa: E402  (check, short, free_port)

try:
    import jsonschema
    import openai
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:
    print(f"python package absent ({e}; scripts/setup.sh installs it into .venv): skipping")
    sys.exit(77)

BIN, MODEL = R.BIN, R.MODEL
check, short = R.check, R.short
VERBOSE = "-v" in sys.argv
KV = str(128 << 20)
# AddressSanitizer's allocator holds freed memory in quarantine: resident-memory checks are
# for the release build only
SANITIZED = b"__asan_init" in open(BIN, "rb").read() if os.path.isfile(BIN) else False
S = {}
NAME = {}  # served model name per server

# ----------------------------------------------------------------------------------------
# servers


class Server(R.Server):  # tail, terminate and kill come from rpc_e2e's
    def __init__(self, name, extra, model=MODEL, nofile=None):
        self.name, self.port = name, R.free_port()
        self.args = [BIN, "serve", "--model", model, "--host", "127.0.0.1", "--port", "0",
                     "--http-port", str(self.port)] + extra
        self.log, self.listening, self.ready = [], threading.Event(), threading.Event()
        limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=limit)
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.append(line)
            if VERBOSE:
                print(f"  [{self.name}] {line}", flush=True)
            if f"listening on http://127.0.0.1:{self.port}" in line:
                self.listening.set()
            if "ready: model" in line:
                self.ready.set()

    def wait(self, event, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not event.is_set() and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return event.is_set()

    def client(self, key="none", **kw):
        return openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key=key, max_retries=0, timeout=60, **kw)



# ----------------------------------------------------------------------------------------
# raw HTTP/1.1


class Closed(Exception):
    pass


class Resp:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def __repr__(self):
        return f"<{self.status} {self.reason} {self.headers} {short(self.body, 300)}>"


class Conn:
    """One connection; response() reads exactly one HTTP response (Content-Length, chunked or to EOF)."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray()

    def send(self, data):
        if VERBOSE:
            print("  >>", repr(data[:160]), flush=True)
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def close(self):
        self.sock.close()

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data from the server in time")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 16)
        except socket.timeout:
            raise TimeoutError("no data from the server in time")
        except ConnectionResetError:
            raise Closed("connection reset")
        if not chunk:
            raise Closed("connection closed")
        self.buf += chunk

    def _until(self, sep, deadline):
        while (i := self.buf.find(sep)) < 0:
            self._fill(deadline)
        out = bytes(self.buf[:i])
        del self.buf[: i + len(sep)]
        return out

    def _take(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def response(self, timeout=30.0, stop=None):
        """stop(body) -> True ends a chunked body early (the rest stays unread)."""
        deadline = time.monotonic() + timeout
        head = self._until(b"\r\n\r\n", deadline).decode("latin-1").split("\r\n")
        ver, status, reason = (head[0].split(" ", 2) + [""])[:3]
        if not ver.startswith("HTTP/1.") or not status.isdigit():
            raise ValueError(f"bad status line {head[0]!r}")
        headers = {}
        for h in head[1:]:
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        status, body = int(status), b""
        if status < 200 or status in (204, 304):
            pass
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            b = bytearray()
            while True:
                size = int(self._until(b"\r\n", deadline).split(b";")[0], 16)
                if size == 0:
                    while self._until(b"\r\n", deadline):
                        pass  # trailers
                    break
                b += self._take(size, deadline)
                if self._take(2, deadline) != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
                if stop and stop(b):
                    break
            body = bytes(b)
        elif "content-length" in headers:
            body = self._take(int(headers["content-length"]), deadline)
        else:
            try:
                while True:
                    self._fill(deadline)
            except Closed:
                body = bytes(self.buf)
                self.buf.clear()
        r = Resp(status, reason, headers, body)
        if VERBOSE:
            print("  <<", r, flush=True)
        return r

    def closed_within(self, timeout):
        """True when the server closes (EOF or reset) within timeout; data meanwhile is discarded."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except Closed:
            return True
        except TimeoutError:
            return False


def req(method, path, body=None, headers=None, host=True, version="HTTP/1.1"):
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    h = {"Host": "127.0.0.1"} if host else {}
    if body is not None:
        h["Content-Type"] = "application/json"
        h["Content-Length"] = str(len(body))
    h.update(headers or {})
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return head.encode() + (body or b"")


def http(port, method, path, body=None, headers=None, timeout=30.0):
    c = Conn(port)
    try:
        c.send(req(method, path, body, dict(headers or {}, Connection="close")))
        return c.response(timeout)
    finally:
        c.close()


def is_err(r, status, type_=None, code="any", param="any"):
    """r: a Resp or an openai.APIStatusError; the status and the error object's fields."""
    if isinstance(r, openai.APIStatusError):
        st, body = r.status_code, {"error": r.body} if isinstance(r.body, dict) else None
    elif isinstance(r, Resp):
        st, body = r.status, r.json()
    else:
        return False
    e = body.get("error") if isinstance(body, dict) else None
    if st != status or not isinstance(e, dict) or not isinstance(e.get("message"), str):
        return False
    if not {"type", "param", "code"} <= e.keys() or (type_ and e["type"] != type_):
        return False
    return (code == "any" or e["code"] == code) and (param == "any" or e["param"] == param)


def send_tolerant(sock, data, chunk=1 << 16):
    """Sends until done, the server has something to say, or the connection breaks."""
    for i in range(0, len(data), chunk):
        if select.select([sock], [], [], 0)[0]:
            return
        try:
            sock.settimeout(5)
            sock.sendall(data[i:i + chunk])
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            return


def metrics(port, headers=None):
    """{sample name: [(labels, value)]} from GET /metrics, and the response."""
    r = http(port, "GET", "/metrics", headers=headers)
    out = {}
    if r.status == 200:
        for fam in text_string_to_metric_families(r.body.decode()):
            for s in fam.samples:
                out.setdefault(s.name, []).append((s.labels, s.value))
    return out, r


def mval(m, name, **labels):
    vals = [v for lab, v in m.get(name, []) if all(lab.get(k) == w for k, w in labels.items())]
    return sum(vals) if vals else None


def wait_idle(srv, timeout=5.0, headers=None):
    deadline = time.monotonic() + timeout
    while True:
        m, _ = metrics(srv.port, headers)
        vals = [mval(m, f"cserve:{k}") for k in ("num_requests_running", "num_requests_waiting", "kv_cache_usage_perc")]
        if vals == [0, 0, 0] or time.monotonic() > deadline:
            return vals == [0, 0, 0], vals, m
        time.sleep(0.1)


def healthy(srv):
    try:
        return http(srv.port, "GET", "/health", timeout=10).status == 200
    except (OSError, Closed, TimeoutError, ValueError):
        return False


# ----------------------------------------------------------------------------------------
# openai client tests (main server)

CHAT = [{"role": "user", "content": "What is 2+2?"}]
P_FRANCE = "The capital of France is"


def cmpl(c, prompt, **kw):
    kw.setdefault("max_tokens", 8)
    kw.setdefault("temperature", 0)
    return c.completions.create(model=NAME["main"], prompt=prompt, **kw)


def chat(c, messages=CHAT, **kw):
    kw.setdefault("max_tokens", 16)
    kw.setdefault("temperature", 0)
    return c.chat.completions.create(model=NAME["main"], messages=messages, **kw)


def test_chat():
    c = S["main"].client()
    r = chat(c)
    ch, u = r.choices[0], r.usage
    check("chat: object chat.completion, id chatcmpl-, model, created, one choice index 0, role assistant",
          r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.model == NAME["main"]
          and isinstance(r.created, int) and len(r.choices) == 1 and ch.index == 0 and ch.message.role == "assistant"
          and isinstance(ch.message.content, str) and ch.message.content != "", r.model_dump_json())
    check("chat: finish_reason 'length' iff completion_tokens == max_tokens, else 'stop'",
          ch.finish_reason == ("length" if u.completion_tokens == 16 else "stop") and 1 <= u.completion_tokens <= 16,
          r.model_dump_json())
    check("chat: usage total == prompt + completion, prompt_tokens_details.cached_tokens an int",
          u.total_tokens == u.prompt_tokens + u.completion_tokens and u.prompt_tokens_details is not None
          and isinstance(u.prompt_tokens_details.cached_tokens, int), u.model_dump_json())
    t = http(S["main"].port, "POST", "/tokenize", {"messages": CHAT}).json() or {}
    check("chat: usage.prompt_tokens == /tokenize {messages} count", t.get("count") == u.prompt_tokens, short(t))

    chunks = list(chat(c, stream=True, stream_options={"include_usage": True}))
    choice_chunks = [k for k in chunks if k.choices]
    first = choice_chunks[0].choices[0] if choice_chunks else None
    text = "".join(k.choices[0].delta.content or "" for k in choice_chunks)
    check("stream: the first chunk has delta role assistant, content ''",
          first is not None and first.delta.role == "assistant" and first.delta.content == "", short(str(chunks[:2])))
    check("stream: one id (chatcmpl-) and object chat.completion.chunk on every chunk",
          len({k.id for k in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
          and all(k.object == "chat.completion.chunk" for k in chunks), short(str([k.id for k in chunks])))
    check("stream: joined deltas == the non-streaming greedy text", text == ch.message.content,
          f"stream {text!r}; non-streaming {ch.message.content!r}")
    last = chunks[-1]
    check("stream: the last chunk has choices [] and the usage; every other chunk usage null",
          last.choices == [] and last.usage is not None and all(k.usage is None for k in chunks[:-1]),
          last.model_dump_json())
    lu = last.usage
    check("stream: usage prompt/completion/total == the non-streaming request's, cached_tokens an int",
          lu is not None and (lu.prompt_tokens, lu.completion_tokens, lu.total_tokens) == (
              u.prompt_tokens, u.completion_tokens, u.total_tokens) and isinstance(lu.prompt_tokens_details.cached_tokens, int),
          f"stream {lu}; non-streaming {u}")
    fin = choice_chunks[-1].choices[0] if choice_chunks else None
    check("stream: the last choice chunk has the finish_reason (same as non-streaming), no earlier one does",
          fin is not None and fin.finish_reason == ch.finish_reason
          and all(k.choices[0].finish_reason is None for k in choice_chunks[:-1]), short(str(choice_chunks[-2:])))


def test_completions():
    c = S["main"].client()
    r = cmpl(c, "Once upon a time", n=3, temperature=0.8, seed=1)
    check("completions n=3 (temperature 0.8, seed 1): indices 0,1,2, object text_completion, id cmpl-",
          sorted(x.index for x in r.choices) == [0, 1, 2] and r.object == "text_completion" and r.id.startswith("cmpl-")
          and all(isinstance(x.text, str) for x in r.choices), r.model_dump_json())
    check("completions n=3: usage total == prompt + completion, completion <= 3 x 8",
          r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens and r.usage.completion_tokens <= 24,
          r.usage.model_dump_json())
    r = cmpl(c, ["Once upon a time", P_FRANCE], n=2, max_tokens=6)
    chs = sorted(r.choices, key=lambda x: x.index)
    check("completions with 2 prompts, n=2: indices 0..3", [x.index for x in chs] == [0, 1, 2, 3], r.model_dump_json())
    greedy = [cmpl(c, p, max_tokens=6).choices[0].text for p in ("Once upon a time", P_FRANCE)]
    check("... greedy: choice i*n+j continues prompt i", [x.text for x in chs] == [greedy[0]] * 2 + [greedy[1]] * 2,
          f"{[x.text for x in chs]} vs {greedy}")

    want = cmpl(c, P_FRANCE)
    ids = (http(S["main"].port, "POST", "/tokenize", {"prompt": P_FRANCE}).json() or {}).get("tokens")
    r = cmpl(c, ids)
    check("completions with prompt as token ids == the same prompt as a string (greedy)",
          r.choices[0].text == want.choices[0].text and r.usage.prompt_tokens == len(ids),
          f"{r.model_dump_json()} vs {want.choices[0].text!r}")

    r = cmpl(c, "1, 2, 3, 4,", max_tokens=16)
    t = r.choices[0].text
    stop = t[len(t) // 2:len(t) // 2 + 2]
    r2 = cmpl(c, "1, 2, 3, 4,", max_tokens=16, stop=[stop, "zzzz"])
    check(f"stop strings: stop {stop!r} -> the greedy text up to it, finish_reason stop",
          len(stop) == 2 and r2.choices[0].text == t[:t.index(stop)] and r2.choices[0].finish_reason == "stop",
          f"greedy {t!r}; with stop {r2.choices[0].text!r} {r2.choices[0].finish_reason}")

    a, b = (cmpl(c, "My favourite animal is", temperature=1.0, seed=42, max_tokens=12).choices[0].text for _ in range(2))
    check("seed 42 at temperature 1: the same text twice", a == b, f"{a!r} vs {b!r}")


def test_structured_output():
    c = S["main"].client()
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 120}},
              "required": ["name", "age"], "additionalProperties": False}
    r = chat(c, [{"role": "user", "content": "Describe a person as JSON."}], max_tokens=64,
             response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": True}})
    text, fin = r.choices[0].message.content, r.choices[0].finish_reason
    try:
        jsonschema.validate(json.loads(text), schema)
        ok = fin == "stop"
    except (ValueError, jsonschema.ValidationError) as e:
        ok, text = False, f"{text!r}: {e}"
    check("response_format json_schema: finishes (stop), parses, validates", ok, f"{fin}: {text}")

    r = chat(c, [{"role": "user", "content": "Give me a JSON object about a cat."}], max_tokens=48,
             response_format={"type": "json_object"})
    text, fin = r.choices[0].message.content, r.choices[0].finish_reason
    try:
        ok = text.startswith("{") and (fin != "stop" or isinstance(json.loads(text), dict))
    except ValueError:
        ok = False
    check(f"response_format json_object: starts with '{{', a JSON object when finished ({fin})", ok, repr(text))

    colors = ["red", "green", "blue"]
    r = chat(c, [{"role": "user", "content": "Pick a colour."}], temperature=1.0, seed=3,
             extra_body={"guided_choice": colors})
    check("guided_choice: the content is one of the choices", r.choices[0].message.content in colors,
          repr(r.choices[0].message.content))
    rx = r"\d{3}-\d{4}"
    r = cmpl(c, "Call me at", temperature=1.0, seed=4, max_tokens=16, extra_body={"guided_regex": rx})
    check("guided_regex: re.fullmatch", re.fullmatch(rx, r.choices[0].text) is not None, repr(r.choices[0].text))


def test_extensions():
    c = S["main"].client()
    g = cmpl(c, P_FRANCE, max_tokens=10).choices[0].text
    r = cmpl(c, P_FRANCE, max_tokens=10, temperature=1.0, seed=9, extra_body={"top_k": 1})
    check("top_k 1 at temperature 1 == greedy", r.choices[0].text == g, f"{r.choices[0].text!r} vs {g!r}")
    r = cmpl(c, P_FRANCE, max_tokens=10, temperature=0.7, seed=9,
             extra_body={"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.2})
    check("top_k 40, min_p 0.05, repetition_penalty 1.2: a completion", r.choices[0].text != "", r.model_dump_json())
    r = chat(c, max_tokens=24, extra_body={"ignore_eos": True})
    check("ignore_eos: completion_tokens == max_tokens (24), finish_reason length",
          r.usage.completion_tokens == 24 and r.choices[0].finish_reason == "length", r.model_dump_json())
    r = chat(c, max_tokens=4, extra_body={"some_unknown_field": 1})
    check("an unknown request field is ignored", r.choices[0].message.content != "", r.model_dump_json())
    m = c.models.list().data
    ready = [ln.split("ready: model ", 1)[1] for ln in S["main"].log if "ready: model " in ln]
    check("models.list(): one model, the served name of the 'ready: model NAME' line",
          [x.id for x in m] == ready == [NAME["main"]], f"{m}; ready line names {ready}")
    base = os.path.basename(MODEL)
    base = base[:-5] if base.endswith(".gguf") else base
    check("the default served name is the model file's name without .gguf (as vLLM names a model by its path)",
          NAME["main"] == base, f"served {NAME['main']!r}; model file {MODEL!r}")


def test_logprobs():
    c = S["main"].client()
    r = chat(c, max_tokens=8, logprobs=True, top_logprobs=3)
    ch = r.choices[0]
    lp = ch.logprobs.content if ch.logprobs else None
    check("chat logprobs: one entry per completion token", lp is not None and len(lp) == r.usage.completion_tokens,
          r.model_dump_json())
    if not lp:
        return
    bad = [e for e in lp if not (e.logprob <= 0 and len(e.top_logprobs) == 3
                                 and all(a.logprob >= b.logprob for a, b in zip(e.top_logprobs, e.top_logprobs[1:]))
                                 and abs(e.logprob - e.top_logprobs[0].logprob) < 1e-4
                                 and e.bytes == list(e.token.encode()))]
    check("chat logprobs: logprob <= 0, 3 top_logprobs sorted descending, greedy token's == top-1, bytes",
          not bad, short(str(bad[:2])))
    check("chat logprobs: joined tokens == content", "".join(e.token for e in lp) == ch.message.content,
          f"{[e.token for e in lp]} vs {ch.message.content!r}")

    r = cmpl(c, P_FRANCE, logprobs=2)
    ch = r.choices[0]
    L = ch.logprobs
    n = r.usage.completion_tokens
    ok = L is not None and len(L.tokens) == len(L.token_logprobs) == len(L.top_logprobs) == len(L.text_offset) == n
    check("completions logprobs=2: tokens/token_logprobs/top_logprobs/text_offset, one per token", ok,
          r.model_dump_json())
    if ok:
        offs = [0]
        for t in L.tokens[:-1]:
            offs.append(offs[-1] + len(t))
        check("completions logprobs: text_offset from 0, consistent with token lengths; tokens join to text",
              L.text_offset == offs and "".join(L.tokens) == ch.text, f"{L.text_offset} vs {offs}; {L.tokens}")
        check("completions logprobs: <= 0, 1..2 alternatives, greedy token's == the best alternative",
              all(v <= 0 and 1 <= len(top) <= 2 and abs(v - max(top.values())) < 1e-4
                  for v, top in zip(L.token_logprobs, L.top_logprobs)), short(str(L)))


def err(fn):
    try:
        return fn()
    except openai.APIStatusError as e:
        return e


def post_main(path, body):
    return http(S["main"].port, "POST", path, body)


def err_msg(r):
    return ((r.json() or {}).get("error") or {}).get("message", "")


def errors_stop():
    # refused up front with the matcher's own rule (they used to end the choice as "abort")
    for stop, why in [("", "0 bytes"), ("x" * 257, "257 bytes"), (["ok", "x" * 300], "entry 1 is 300 bytes")]:
        r = post_main("/v1/completions", {"prompt": "hi", "max_tokens": 1, "stop": stop})
        check(f"stop {short(json.dumps(stop), 24)} -> 400 param stop, '{why}'",
              is_err(r, 400, "invalid_request_error", param="stop") and why in err_msg(r), repr(r))
    r = post_main("/v1/completions", '{"prompt": "hi", "max_tokens": 1, "stop": "\\u0000"}')
    check("stop \\u0000 -> 400 param stop", is_err(r, 400, param="stop"), repr(r))
    r = post_main("/v1/completions", {"prompt": "hi", "max_tokens": 1, "stop": "x" * 256})
    check("stop of 256 bytes -> 200", r.status == 200, repr(r))


def errors_strict_json():
    ok = '{"prompt": "hi", "max_tokens": 1}'
    bad = [(ok + "xyz", "data after the object"), (ok + "{}", "a second object"),
           (ok.replace(",", ",\x00"), "a NUL byte between tokens"), (ok.replace(",", ",\x0b"), "a vertical tab between tokens"),
           (ok.replace("hi", "h\x01i"), "a raw control byte in a string"), (ok.replace("hi", "h\ni"), "a raw newline in a string")]
    for body, what in bad:
        r = post_main("/v1/completions", body.encode())
        check(f"a body with {what} -> 400, param null", is_err(r, 400, "invalid_request_error", param=None), repr(r))
    r = post_main("/v1/completions", (ok + " \r\n\t").encode())
    check("a body with JSON whitespace after the object -> 200", r.status == 200, repr(r))
    r = post_main("/tokenize", '{"prompt": "hi"}{}')
    check("/tokenize: a second object after the body -> 400", is_err(r, 400, param=None), repr(r))
    # cJSON would take the first value, Python (vLLM, a gateway) the last: refused, naming the key
    r = post_main("/v1/completions", '{"prompt": "hi", "max_tokens": 1, "max_tokens": 2}')
    check("max_tokens twice -> 400 param max_tokens", is_err(r, 400, param="max_tokens"), repr(r))
    r = post_main("/v1/chat/completions", '{"messages": [{"role": "user", "content": "a", "content": "b"}], "max_tokens": 1}')
    check("a message with content twice -> 400 param messages", is_err(r, 400, param="messages") and "content" in err_msg(r),
          repr(r))
    # a C string ends at a NUL: the text would arrive cut short
    for path, body, param in [("/v1/completions", '{"prompt": "a\\u0000b", "max_tokens": 1}', "prompt"),
                              ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "a\\u0000b"}], "max_tokens": 1}',
                               "messages"),
                              ("/tokenize", '{"prompt": "a\\u0000b"}', "prompt")]:
        r = post_main(path, body)
        check(f"{path}: \\u0000 in {param} -> 400 param {param}", is_err(r, 400, param=param), repr(r))


def errors_log_injection():
    srv = S["main"]
    tag = f"zz{random.randrange(1 << 40):x}"
    r = post_main("/v1/completions", '{"prompt": "hi", "max_tokens": 1, "%s\\u001b[31mred\\nfake log line": 1}' % tag)
    deadline = time.monotonic() + 5
    while not any(tag in line for line in list(srv.log)) and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in list(srv.log) if tag in line]
    check("an unknown field's name is logged escaped: one line, \\x1b and \\x0a, no raw ESC, no forged line",
          r.status == 200 and len(lines) == 1 and "\\x1b[31mred\\x0afake log line" in lines[0] and "\x1b" not in lines[0]
          and not any(line.startswith("fake log line") for line in srv.log), f"{r!r}; {lines}")


def errors_messages():
    r = post_main("/v1/completions", {"prompt": "hi", "max_tokens": 1, "seed": 2 ** 53})
    m = err_msg(r)
    check("seed 2^53 -> 400 whose numbers are exact: 9007199254740992 against +-9007199254740991",
          is_err(r, 400, param="seed") and "9007199254740992 " in m and "9007199254740991]" in m and "e+" not in m, repr(r))
    r = post_main("/v1/completions", {"prompt": "hi", "max_tokens": 2 ** 31})
    m = err_msg(r)
    check("max_tokens 2^31 -> 400: 2147483648 against [1, 16777216]",
          is_err(r, 400, param="max_tokens") and "2147483648 " in m and "[1, 16777216]" in m, repr(r))
    for role in ("", "a b", "user<|im_end|>"):
        r = post_main("/v1/chat/completions", {"messages": [{"role": role, "content": "x"}], "max_tokens": 1})
        check(f"role {role!r} -> 400 param messages, naming the roles",
              is_err(r, 400, param="messages") and "system, user or assistant" in err_msg(r), repr(r))
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}
    r = post_main("/v1/chat/completions", {"messages": CHAT, "max_tokens": 1, "response_format": rf})
    check("a bad schema under response_format -> 400 param response_format", is_err(r, 400, param="response_format"),
          repr(r))
    r = post_main("/v1/completions", {"prompt": "hi", "max_tokens": 1, "guided_regex": "(("})
    check("a bad guided_regex -> 400 param guided_regex", is_err(r, 400, param="guided_regex"), repr(r))
    r = post_main("/v1/chat/completions", {"messages": [{"role": "user", "content": "hello " * 2000}], "max_tokens": 1})
    check("messages over the context -> 400 context_length_exceeded, param messages",
          is_err(r, 400, code="context_length_exceeded", param="messages"), repr(r))


def test_errors():
    c = S["main"].client()
    e = err(lambda: chat(c, temperature=-1))
    check("temperature -1 -> BadRequestError 400, invalid_request_error, param temperature",
          isinstance(e, openai.BadRequestError) and is_err(e, 400, "invalid_request_error", param="temperature"),
          short(repr(e)))
    e = err(lambda: c.chat.completions.create(model="no-such-model", messages=CHAT, max_tokens=2))
    check("unknown model -> NotFoundError 404, code model_not_found",
          isinstance(e, openai.NotFoundError) and is_err(e, 404, "not_found_error", "model_not_found"), short(repr(e)))
    e = err(lambda: cmpl(c, "hello " * 2000))
    check("a prompt over the context -> BadRequestError, code context_length_exceeded",
          isinstance(e, openai.BadRequestError) and is_err(e, 400, "invalid_request_error", "context_length_exceeded"),
          short(repr(e)))
    t0 = time.monotonic()
    r = http(S["main"].port, "POST", "/v1/completions", {"prompt": "hello " * 4000000, "max_tokens": 1}, timeout=60)
    dt = time.monotonic() - t0
    check(f"a 24 MB prompt -> 400 context_length_exceeded after tokenizing only past the context ({dt:.2f} s)",
          is_err(r, 400, code="context_length_exceeded") and "more than 1024 tokens" in r.body.decode(), repr(r))
    r = http(S["main"].port, "POST", "/tokenize", {"prompt": "hello " * 4000000})
    check("/tokenize of a 24 MB prompt -> 400: more tokens than it answers", is_err(r, 400, param="prompt")
          and "more than" in r.body.decode(), repr(r))
    e = err(lambda: chat(c, max_tokens=100000))
    check("max_tokens 100000 -> 400 context_length_exceeded",
          isinstance(e, openai.BadRequestError) and is_err(e, 400, code="context_length_exceeded"), short(repr(e)))
    e = err(lambda: chat(c, tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]))
    check("tools (unsupported) -> 400 naming tools", isinstance(e, openai.BadRequestError) and "tools" in str(e),
          short(repr(e)))
    e = err(lambda: cmpl(c, P_FRANCE, n=65))
    check("n 65 -> 400 param n", is_err(e, 400, param="n"), short(repr(e)))
    errors_stop()
    errors_strict_json()
    errors_log_injection()
    errors_messages()


def test_auth():
    srv = S["auth"]
    e = err(lambda: srv.client("wrong-key").models.list())
    check("auth: a wrong API key -> AuthenticationError 401, code invalid_api_key",
          isinstance(e, openai.AuthenticationError) and is_err(e, 401, "authentication_error", "invalid_api_key"),
          short(repr(e)))
    r = http(srv.port, "GET", "/v1/models")
    check("auth: no Authorization header -> 401", is_err(r, 401, "authentication_error"), repr(r))
    r = http(srv.port, "GET", "/health")
    check("auth: /health without a key -> 200", r.status == 200, repr(r))
    c = srv.client(S["auth_key"])
    m = c.models.list().data
    r = c.completions.create(model="test-model", prompt="Hi", max_tokens=2, temperature=0)
    check("auth: the right key works; --served-model-name test-model is listed and echoed",
          [x.id for x in m] == ["test-model"] and r.model == "test-model", f"{m}; {r.model_dump_json()}")


# ----------------------------------------------------------------------------------------
# raw socket tests (main server, --http-request-timeout 2)


def test_raw_endpoints():
    port = S["main"].port
    r = http(port, "GET", "/health")
    check("GET /health -> 200, empty body", r.status == 200 and r.body == b"", repr(r))
    r = http(port, "GET", "/v1/models")
    d = ((r.json() or {}).get("data") or [{}])[0]
    check("GET /v1/models: object list, the model with object model, owned_by cserve, max_model_len 1024",
          r.status == 200 and r.json().get("object") == "list" and d.get("id") == NAME["main"]
          and d.get("object") == "model" and d.get("owned_by") == "cserve" and d.get("max_model_len") == 1024
          and isinstance(d.get("created"), int) and "application/json" in r.headers.get("content-type", ""), repr(r))
    txt = "Hello world, héllo wörld ✓ 日本語 🙂"
    t = http(port, "POST", "/tokenize", {"prompt": txt, "add_special_tokens": False}).json() or {}
    d = http(port, "POST", "/detokenize", {"tokens": t.get("tokens", [])}).json() or {}
    check("POST /tokenize -> tokens, count, max_model_len; /detokenize round trip",
          t.get("count") == len(t.get("tokens") or [0]) > 0 and t.get("max_model_len") == 1024 and d.get("prompt") == txt,
          f"{short(t)}; {short(d)}")
    pieces = [http(port, "POST", "/detokenize", {"tokens": [x]}) for x in t.get("tokens", [])]
    cut = [p.json()["prompt"] for p in pieces if p.status == 200 and "\ufffd" in (p.json() or {}).get("prompt", "")]
    tail = (http(port, "POST", "/tokenize", {"prompt": " tail", "add_special_tokens": False}).json() or {}).get("tokens", [])
    part = [x for x, p in zip(t.get("tokens", []), pieces) if "\ufffd" in (p.json() or {}).get("prompt", "")][:1]
    d2 = (http(port, "POST", "/detokenize", {"tokens": part + tail}).json() or {}).get("prompt", "")
    check("/detokenize of single tokens: all 200; a cut character becomes U+FFFD and the text after it stays",
          all(p.status == 200 for p in pieces) and cut and "\ufffd" in d2 and d2.endswith(" tail"),
          f"{len(pieces)} pieces, {len(cut)} cut; {d2!r}")
    r = http(port, "GET", "/no/such/path")
    check("unknown path -> 404 not_found_error", is_err(r, 404, "not_found_error"), repr(r))
    r = http(port, "GET", "/v1/completions")
    check("GET /v1/completions -> 405 with Allow: POST", r.status == 405 and "POST" in r.headers.get("allow", ""), repr(r))
    # HEAD: GET's status and headers, Content-Length included, and no body; the connection goes on
    models = http(port, "GET", "/v1/models")
    c = Conn(port)
    c.send(req("HEAD", "/v1/models") + req("HEAD", "/v1/completions") + req("GET", "/health"))
    deadline = time.monotonic() + 10
    heads = [c._until(b"\r\n\r\n", deadline).decode("latin-1") for _ in range(2)]
    after = c.response()
    c.close()
    check("HEAD /v1/models -> 200 with GET's Content-Length and no body; HEAD of a POST path -> 405; then GET "
          "answered on the same connection",
          heads[0].startswith("HTTP/1.1 200") and f"Content-Length: {len(models.body)}" in heads[0]
          and heads[1].startswith("HTTP/1.1 405") and after.status == 200 and after.body == b"", f"{heads}; {after!r}")


def test_raw_framing():
    port = S["main"].port
    c = Conn(port)
    c.send(req("POST", "/v1/completions", b'{"prompt": "hi", '))
    r = c.response()
    c.send(req("GET", "/health"))
    r2 = c.response()
    check("malformed JSON -> 400 invalid_request_error; the connection stays usable (keep-alive)",
          is_err(r, 400, "invalid_request_error") and r2.status == 200, f"{r!r}; then {r2!r}")
    c.close()

    c = Conn(port)
    c.send(req("GET", "/health") + req("GET", "/v1/models"))
    a, b = c.response(), c.response()
    check("two pipelined requests in one send -> two responses in order",
          a.status == 200 and a.body == b"" and b.status == 200 and (b.json() or {}).get("object") == "list",
          f"{a!r}; {b!r}")
    c.send(req("GET", "/health", headers={"Connection": "close"}))
    r = c.response()
    check("Connection: close -> answered, then closed", r.status == 200 and c.closed_within(3), repr(r))
    c.close()
    c = Conn(port)
    c.send(req("GET", "/health", version="HTTP/1.0", host=False))
    r = c.response()
    check("HTTP/1.0 -> answered, then closed", r.status == 200 and c.closed_within(3), repr(r))
    c.close()

    body = b'{"prompt": "hi", "max_tokens": 1}'
    c = Conn(port)
    c.send(req("POST", "/v1/completions", body).replace(f"Content-Length: {len(body)}".encode(), b"Content-Length: 10"))
    r = c.response()
    try:
        r2 = c.response(6)
    except Closed:
        r2 = "closed"
    check("Content-Length shorter than the body: 400 for the truncated JSON, then 400/408 or close; server up",
          is_err(r, 400) and (r2 == "closed" or r2.status in (400, 408)) and healthy(S["main"]), f"{r!r}; then {r2!r}")
    c.close()

    c = Conn(port)
    c.send(req("GET", "/health", host=False))
    r = c.response()
    check("HTTP/1.1 without Host -> 400", r.status == 400, repr(r))
    c.close()
    c = Conn(port)
    c.send(b"POST /tokenize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    r = c.response()
    check("Transfer-Encoding: chunked request -> 501", r.status == 501, repr(r))
    c.close()
    c = Conn(port)
    body = json.dumps({"prompt": "Hello world"}).encode()
    head = req("POST", "/tokenize", body, {"Expect": "100-continue"})[:-len(body)]
    c.send(head)
    r = c.response(5)
    c.send(body)
    r2 = c.response()
    check("Expect: 100-continue -> 'HTTP/1.1 100 Continue', then the real response",
          r.status == 100 and r2.status == 200 and (r2.json() or {}).get("count") == 2, f"{r!r}; then {r2!r}")
    c.close()

    # a client that half-closes after its requests (nc -N) still gets every answer
    c = Conn(port)
    c.send(req("GET", "/health") + req("GET", "/v1/models"))
    c.sock.shutdown(socket.SHUT_WR)
    a, b = c.response(), c.response()
    check("requests then a half-close (shutdown SHUT_WR): both answered, then closed",
          a.status == 200 and b.status == 200 and c.closed_within(3), f"{a!r}; {b!r}")
    c.close()

    # pipelined requests with different bodies, the first answered at once: each runs with its own
    # body (the second was once read from the first's offset)
    def tok(prompt, extra=b""):
        body = json.dumps({"prompt": prompt}).encode()
        return (b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(body)) + extra + b"\r\n" + body
    alone = [http(port, "POST", "/tokenize", {"prompt": p}).json().get("tokens") for p in ("apple", "zebra")]
    c = Conn(port)
    c.send(tok("apple", b"X-Pad: 1234567890\r\n") + tok("zebra", b"Connection: close\r\n"))
    a, b = c.response(), c.response()
    check("two pipelined /tokenize requests with different bodies: each answered from its own body",
          a.status == 200 and b.status == 200 and [a.json().get("tokens"), b.json().get("tokens")] == alone
          and alone[0] != alone[1], f"{a!r}; {b!r}; alone {alone}")
    c.close()
    c = Conn(port)
    c.send(req("GET", "/health") + req("POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 1, "temperature": 0},
                                       {"Connection": "close"}))
    a, b = c.response(), c.response()
    check("/health then a completion, pipelined: the completion runs (200)",
          a.status == 200 and b.status == 200 and (b.json() or {}).get("object") == "text_completion", f"{a!r}; {b!r}")
    c.close()
    c = Conn(port)
    c.send(req("GET", "/health", version="HTTP/1.0", host=False, headers={"Connection": "keep-alive"}))
    r = c.response()
    c.send(req("GET", "/health", version="HTTP/1.0", host=False))
    r2 = c.response()
    check("HTTP/1.0 with Connection: keep-alive -> 'Connection: keep-alive' in the answer, the connection reused",
          r.status == 200 and r.headers.get("connection", "").lower() == "keep-alive" and r2.status == 200,
          f"{r!r}; {r2!r}")
    c.close()
    c = Conn(port)
    c.send(req("POST", "/tokenize", {"prompt": "hi"}, {"Expect": "something-else"}))
    r = c.response()
    check("Expect other than 100-continue -> 417", r.status == 417, repr(r))
    c.close()

    # 2,000 pipelined requests in one send: answered in order, in linear time
    c = Conn(port)
    t0 = time.monotonic()
    c.send(req("GET", "/health") * 1999 + req("GET", "/health", headers={"Connection": "close"}))
    rs = [c.response() for _ in range(2000)]
    dt = time.monotonic() - t0
    check("2,000 pipelined requests in one send: 2,000 answers, then closed",
          all(r.status == 200 for r in rs) and c.closed_within(3), f"{len(rs)} answers in {dt:.2f} s")
    c.close()

    # HTTP/1.0 stream: no chunked encoding; the stream ends with the connection
    c = Conn(port)
    c.send(req("POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 3, "temperature": 0, "stream": True},
               version="HTTP/1.0"))
    r = c.response()
    check("HTTP/1.0 stream: no Transfer-Encoding, events then data: [DONE], connection closed",
          r.status == 200 and "transfer-encoding" not in r.headers and r.body.count(b"data: ") >= 2 and
          r.body.endswith(b"data: [DONE]\n\n"), repr(r))
    c.close()


def test_raw_limits():
    port = S["main"].port
    c = Conn(port)
    t0 = time.monotonic()
    c.send(req("POST", "/tokenize", b'{"prompt": "x"}' + b" " * 85)[:-90])  # Content-Length 100, 10 bytes sent
    try:
        r = c.response(8)
    except (Closed, TimeoutError) as e:
        r = repr(e)
    dt = time.monotonic() - t0
    check(f"Content-Length longer than the body, then silence -> 408 after ~2 s ({dt:.1f} s) and close",
          isinstance(r, Resp) and r.status == 408 and 1.5 <= dt <= 4.5 and c.closed_within(2), repr(r))
    c.close()

    c = Conn(port)
    msg = req("GET", "/health")
    t0 = time.monotonic()
    r = None
    for i in range(len(msg)):
        try:
            c.send(msg[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            break
        if select.select([c.sock], [], [], 1.0)[0]:
            break
    try:
        r = c.response(2)
    except (Closed, TimeoutError) as e:
        r = repr(e)
    dt = time.monotonic() - t0
    check(f"headers one byte a second -> 408 within ~4 s ({dt:.1f} s) and close",
          isinstance(r, Resp) and r.status == 408 and dt <= 4.5 and c.closed_within(2), repr(r))
    c.close()

    c = Conn(port)
    c.send(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n")
    if not select.select([c.sock], [], [], 2.0)[0]:
        send_tolerant(c.sock, b"x" * (4 << 20))
    try:
        r = c.response(10)
    except (Closed, TimeoutError) as e:
        r = repr(e)
    send_tolerant(c.sock, b"x" * (4 << 20))
    check("a 100 MB body (Content-Length 100000000) -> 413 and close; the server stays up",
          isinstance(r, Resp) and r.status == 413 and c.closed_within(3) and healthy(S["main"]), repr(r))
    c.close()

    c = Conn(port)
    send_tolerant(c.sock, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
    try:
        r = c.response(10)
    except (Closed, TimeoutError) as e:
        r = repr(e)
    check("a 1 MiB header -> 431 and close; the server stays up",
          isinstance(r, Resp) and r.status == 431 and c.closed_within(3) and healthy(S["main"]), repr(r))
    c.close()

    # a large body of token ids: refused, and the parse's memory handed back afterwards
    def rss_mb(pid):
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0
    srv = S["main"]
    before = rss_mb(srv.proc.pid)
    r = http(port, "POST", "/v1/completions", b'{"prompt": [' + b"1," * 4999999 + b'1], "max_tokens": 1}', timeout=60)
    deadline = time.monotonic() + 3  # the memory is handed back after the answer is written
    while (after := rss_mb(srv.proc.pid)) >= before + 100 and time.monotonic() < deadline:
        time.sleep(0.1)
    check(f"5,000,000 prompt ids (10 MB of JSON) -> 400; resident memory {before:.0f} -> {after:.0f} MiB afterwards",
          is_err(r, 400) and (after < before + 100 or SANITIZED) and healthy(srv), repr(r))
    # bodies still arriving are held in memory: at most 8 of --max-body-bytes (32 MiB) at once
    big = [Conn(port) for _ in range(9)]
    for c in big:
        c.send(b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{" % (32 << 20))
    try:
        r = big[8].response(5)
    except (Closed, TimeoutError) as e:
        r = repr(e)
    small = http(port, "POST", "/tokenize", {"prompt": "still here"})
    for c in big:
        c.close()
    time.sleep(0.3)
    again = Conn(port)
    again.send(b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{" % (32 << 20))
    quiet = not select.select([again.sock], [], [], 0.5)[0]  # taken: the server waits for the body
    again.close()
    check("9 bodies of 32 MiB announced at once: the 9th -> 503 and close; a small request still answered; "
          "closing them gives the room back",
          isinstance(r, Resp) and r.status == 503 and small.status == 200 and quiet, f"{r!r}; {small!r}; quiet {quiet}")

    # 20 keep-alive connections that each sent a 10 MB body do not keep its buffer while idle
    before = rss_mb(srv.proc.pid)
    conns, answers = [], []
    for _ in range(20):
        c = Conn(port)
        conns.append(c)
        c.send(req("POST", "/tokenize", b'{"prompt": "' + b"a" * (10 << 20) + b'"'))  # unterminated: 400
        answers.append(c.response(30).status)
    after = rss_mb(srv.proc.pid)
    for c in conns:
        c.close()
    check(f"20 idle keep-alive connections after a 10 MB body each: resident memory {before:.0f} -> {after:.0f} MiB",
          answers == [400] * 20 and (after < before + 100 or SANITIZED), str(answers))


def test_fd_limit():
    """Under a low open-files limit the server lowers --max-connections to fit beside its own
    files, answers the connections past it with 503 at once, and does not spin."""
    srv = Server("fds", ["--max-model-len", "256", "--kv-cache-memory", KV], nofile=128)
    held = []
    try:
        ok = srv.wait(srv.ready, 60)
        lowered = any("--max-connections lowered from 1024 to 64" in line for line in srv.log)
        check("open files limited to 128: the server lowers --max-connections to 64 and says so", ok and lowered,
              srv.tail(5))
        if not ok:
            return
        for _ in range(64):
            c = Conn(srv.port)
            held.append(c)
            c.send(req("GET", "/health"))
            c.response()
        ticks0 = sum(int(x) for x in open(f"/proc/{srv.proc.pid}/stat").read().rsplit(")", 1)[1].split()[11:13])
        t0 = time.monotonic()
        c = Conn(srv.port)
        try:
            r = c.response(5)
        except (Closed, TimeoutError) as e:
            r = repr(e)
        finally:
            c.close()
        dt = time.monotonic() - t0
        time.sleep(1.0)
        ticks = sum(int(x) for x in open(f"/proc/{srv.proc.pid}/stat").read().rsplit(")", 1)[1].split()[11:13]) - ticks0
        cpu = ticks / os.sysconf("SC_CLK_TCK")
        check(f"the 65th connection -> 503 too many connections at once ({dt:.2f} s); the server idles "
              f"({cpu:.2f} s of CPU in the next second)",
              isinstance(r, Resp) and r.status == 503 and b"too many connections" in r.body and dt < 2 and cpu < 0.3,
              repr(r))
        for c in held:
            c.close()
        held = []
        time.sleep(0.3)
        check("connections closed: the server answers again", healthy(srv))
    finally:
        for c in held:
            c.close()
        srv.kill()


def test_disconnect():
    srv = S["main"]
    m0, _ = metrics(srv.port)
    c = Conn(srv.port)
    c.send(req("POST", "/v1/chat/completions", {"model": NAME["main"], "messages": CHAT, "max_tokens": 600,
                                                "ignore_eos": True, "stream": True}))
    r = c.response(30, stop=lambda b: b.count(b"data: ") >= 2)
    check("stream over raw HTTP: 200, chunked, text/event-stream, data: events",
          r.status == 200 and r.headers.get("content-type", "").startswith("text/event-stream")
          and r.body.startswith(b"data: {"), repr(r))
    c.close()
    ok, vals, m1 = wait_idle(srv, 3)
    # the engine's gauges can drop to 0 a moment before the server has counted the request's end
    for _ in range(30):
        canc = (mval(m1, "cserve:request_success_total", finished_reason="cancelled") or 0) - \
               (mval(m0, "cserve:request_success_total", finished_reason="cancelled") or 0)
        if canc >= 1:
            break
        time.sleep(0.1)
        m1, _ = metrics(srv.port)
    g = (mval(m1, "cserve:generation_tokens_total") or 0) - (mval(m0, "cserve:generation_tokens_total") or 0)
    check("streaming client closed after the first event -> cancelled: idle within 3 s, far fewer than 600 tokens, "
          "request_success_total{cancelled} +1", ok and g < 300 and canc == 1, f"running/waiting/kv {vals}; +{g} tokens; +{canc} cancelled")

    c = Conn(srv.port)
    c.send(req("POST", "/v1/completions", {"prompt": "Write a long story.", "max_tokens": 900, "ignore_eos": True}))
    time.sleep(0.5)
    c.close()
    ok, vals, _ = wait_idle(srv, 3)
    check("non-streaming client closed after 0.5 s -> cancelled: idle within 3 s", ok, f"running/waiting/kv {vals}")


def drain_on_sigterm(srv):
    """SIGTERM while a stream runs: it runs to its end, new requests are turned away, exit 0."""
    c = Conn(srv.port, timeout=60)
    c.send(req("POST", "/v1/completions", {"model": NAME["metrics"], "prompt": "Once upon a time",
                                           "max_tokens": 48, "ignore_eos": True, "stream": True}))
    started, out = threading.Event(), {}

    def read():
        try:
            out["r"] = c.response(60, stop=lambda b: started.set() or False)
        except Exception as e:  # noqa: BLE001
            out["e"] = e
    t = threading.Thread(target=read, daemon=True)
    t.start()
    ok = started.wait(30)
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    try:  # a new request while draining: 503 with Retry-After, or the listener already closed
        h = http(srv.port, "GET", "/health", timeout=5)
        turned_away = h.status == 503
    except (OSError, Closed, TimeoutError):
        turned_away = True
    t.join(60)
    c.close()
    r = out.get("r")
    events = [e for e in (r.body.split(b"\n\n") if r else []) if e.startswith(b"data: ")]
    texts = [json.loads(e[6:]) for e in events if e != b"data: [DONE]"]
    n_text = sum(1 for j in texts if (j.get("choices") or [{}])[0].get("text"))
    last = texts[-1]["choices"][0].get("finish_reason") if texts and texts[-1].get("choices") else None
    check("SIGTERM mid-stream: the stream still runs to its 48 tokens, finish_reason length, then [DONE]",
          ok and r is not None and r.status == 200 and events and events[-1] == b"data: [DONE]" and n_text == 48
          and last == "length", f"started {ok}; {out.get('e')!r}; {n_text} text events; last {last}; "
          f"{short(r.body if r else b'', 300)}")
    check("SIGTERM mid-stream: a new request meanwhile is turned away (503 or refused)", turned_away)
    try:
        rc = srv.proc.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    check("SIGTERM mid-stream: exit code 0 once the stream is done", rc == 0,
          f"rc {rc} after {time.monotonic() - t0:.1f}s; {srv.tail(4)}")


# ----------------------------------------------------------------------------------------
# overload, metrics, loading


def test_overload():
    srv = S["busy"]
    barrier = threading.Barrier(8)
    out = [None] * 8

    def one(i):
        c = srv.client()
        barrier.wait()
        try:
            out[i] = c.completions.create(model=NAME["busy"], prompt=f"Story {i}:", max_tokens=16, temperature=0,
                                          extra_body={"ignore_eos": True})
        except openai.APIStatusError as e:
            out[i] = e
        except Exception as e:  # noqa: BLE001
            out[i] = repr(e)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    busy = [e for e in out if isinstance(e, openai.APIStatusError) and is_err(e, 503, "service_unavailable_error")
            and e.response.headers.get("retry-after")]
    fine = [r for r in out if isinstance(r, openai.types.Completion) and r.usage.completion_tokens == 16]
    check(f"--max-queued 1 --max-num-seqs 1: 8 concurrent -> {len(busy)} x 503 with Retry-After, {len(fine)} x 200, "
          "nothing else", busy and fine and len(busy) + len(fine) == 8,
          short(str([x if isinstance(x, str) else repr(x)[:200] for x in out])))


def test_metrics():
    srv = S["metrics"]
    c = srv.client()
    us = [c.completions.create(model=NAME["metrics"], prompt=p, max_tokens=8, temperature=0).usage
          for p in (P_FRANCE, "Once upon a time", "def fibonacci(n):")]
    m, r = metrics(srv.port)
    check("/metrics: 200, text/plain; version=0.0.4, parses",
          r.status == 200 and r.headers.get("content-type", "").startswith("text/plain; version=0.0.4") and m != {},
          repr(r))
    unlabelled = [(k, lab) for k, v in m.items() for lab, _ in v if lab.get("model_name") != NAME["metrics"]]
    check("/metrics: every sample has model_name=NAME", not unlabelled, short(str(unlabelled[:4])))
    got = {k: mval(m, "cserve:" + k) for k in ("requests_total", "prompt_tokens_total", "generation_tokens_total",
                                               "request_success_total", "time_to_first_token_seconds_count",
                                               "e2e_request_latency_seconds_count", "request_queue_time_seconds_count")}
    want = {"requests_total": 3, "prompt_tokens_total": sum(u.prompt_tokens for u in us),
            "generation_tokens_total": sum(u.completion_tokens for u in us), "request_success_total": 3,
            "time_to_first_token_seconds_count": 3, "e2e_request_latency_seconds_count": 3,
            "request_queue_time_seconds_count": 3}
    check("/metrics after 3 completions: requests, prompt/generation tokens == usage sums, successes, histogram counts",
          got == want, f"got {got}; want {want}")
    fams = ["cserve:num_requests_running", "cserve:num_requests_waiting", "cserve:kv_cache_usage_perc",
            "cserve:prefix_cache_queries_total", "cserve:prefix_cache_hits_total",
            "cserve:inter_token_latency_seconds_count", "cserve:e2e_request_latency_seconds_bucket"]
    check("/metrics: the other families present", all(f in m for f in fams), str([f for f in fams if f not in m]))
    check("/metrics: http_responses_total{code=200} >= 3", (mval(m, "cserve:http_responses_total", code="200") or 0) >= 3,
          str(m.get("cserve:http_responses_total")))


def test_loading():
    tmp = tempfile.mkdtemp(prefix="cserve_http_")
    fifo = os.path.join(tmp, "model.gguf")
    os.mkfifo(fifo)
    srv = Server("fifo", [], model=fifo)
    try:
        up = srv.wait(srv.listening, 20)
        check("loading: the HTTP port listens before the model is loaded", up, srv.tail())
        if not up:
            return
        r = http(srv.port, "GET", "/health")
        check("loading: GET /health -> 503", r.status == 503, repr(r))
        r = http(srv.port, "GET", "/v1/models")
        check("loading: GET /v1/models -> 503 service_unavailable_error with Retry-After",
              is_err(r, 503, "service_unavailable_error") and "retry-after" in r.headers, repr(r))
        fd, deadline = None, time.monotonic() + 5
        while fd is None and time.monotonic() < deadline:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader yet
                time.sleep(0.05)
        check("loading: the loader has the FIFO open for reading", fd is not None, srv.tail())
        if fd is not None:
            try:
                os.write(fd, b"not a gguf")
            except BrokenPipeError:
                pass  # the loader rejected the FIFO without reading it
            os.close(fd)
        try:
            rc = srv.proc.wait(10)
        except subprocess.TimeoutExpired:
            rc = None
        time.sleep(0.2)
        check("loading: garbage model -> non-zero exit, stderr names the path",
              rc not in (None, 0) and any(fifo in line for line in srv.log), f"rc {rc}; stderr {srv.tail()}")
        bad = os.path.join(tmp, "garbage.gguf")
        with open(bad, "wb") as f:
            f.write(b"not a gguf" * 100)
        srv2 = Server("garbage", [], model=bad)
        try:
            rc = srv2.proc.wait(20)
        except subprocess.TimeoutExpired:
            rc = None
        time.sleep(0.2)
        check("loading: a regular file of garbage -> non-zero exit, stderr names the path",
              rc not in (None, 0) and any(bad in line for line in srv2.log), f"rc {rc}; stderr {srv2.tail()}")
        srv2.kill()
        os.unlink(bad)
    finally:
        srv.kill()
        os.unlink(fifo)
        os.rmdir(tmp)


# ----------------------------------------------------------------------------------------
# main

TESTS = [test_chat, test_completions, test_structured_output, test_extensions, test_logprobs, test_errors, test_auth,
         test_raw_endpoints, test_raw_framing, test_raw_limits, test_fd_limit, test_disconnect, test_overload, test_metrics,
         test_loading]


def main():
    only = sys.argv[sys.argv.index("-k") + 1] if "-k" in sys.argv else None
    if not os.path.isfile(MODEL):
        print(f"model {MODEL} absent: skipping")
        return 77
    t_start = time.monotonic()
    S["auth_key"] = f"k-{random.randrange(1 << 40):x}"
    base = ["--max-model-len", "1024", "--kv-cache-memory", KV]
    servers = {"main": base + ["--http-request-timeout", "2"],
               "auth": base + ["--api-key", S["auth_key"], "--served-model-name", "test-model"],
               "busy": base + ["--max-queued", "1", "--max-num-seqs", "1"],
               "metrics": base}
    dead = set()
    try:
        for name, extra in servers.items():
            S[name] = Server(name, extra)
        for name in servers:
            srv = S[name]
            ok = srv.wait(srv.ready, 60)
            check(f"{name} server: 'ready: model' on stderr", ok, f"exit {srv.proc.poll()}; {srv.args}; {srv.tail()}")
            if not ok:
                raise SystemExit(f"{name} server did not start")
            hdr = {"Authorization": f"Bearer {S['auth_key']}"} if name == "auth" else None
            NAME[name] = ((http(srv.port, "GET", "/v1/models", headers=hdr).json() or {}).get("data") or [{}])[0].get("id")
        for t in TESTS:
            if only and only not in t.__name__:
                continue
            print(f"--- {t.__name__}", flush=True)
            t0 = time.monotonic()
            try:
                t()
            except Exception as e:  # noqa: BLE001
                check(f"{t.__name__} ran to the end", False, f"{type(e).__name__}: {e}\n{traceback.format_exc()[-1500:]}")
            print(f"    ({time.monotonic() - t0:.1f}s)", flush=True)
            for name in servers:
                if name not in dead and S[name].proc.poll() is not None:
                    dead.add(name)
                    check(f"{name} server still running after {t.__name__}", False,
                          f"exit {S[name].proc.poll()}; stderr: {S[name].tail(30)}")
        print("--- shutdown", flush=True)
        for name in servers:
            if name in dead:
                continue
            hdr = {"Authorization": f"Bearer {S['auth_key']}"} if name == "auth" else None
            try:
                ok, vals, _ = wait_idle(S[name], 5, hdr)
            except (OSError, Closed, TimeoutError, ValueError) as e:
                ok, vals = False, repr(e)
            check(f"{name} server: num_requests_running == waiting == kv_cache_usage_perc == 0", ok, str(vals))
            if name == "metrics" and not only:
                drain_on_sigterm(S[name])
                continue
            rc, dt = S[name].terminate(5)
            check(f"{name} server: SIGTERM -> exit code 0 within 5 s", rc == 0, f"rc {rc} after {dt:.1f}s; {S[name].tail(4)}")
    except SystemExit as e:
        check("run completed", False, str(e))
    finally:
        for name in servers:
            if name in S:
                S[name].kill()
    print(f"\n{R._checks} checks, {len(R._failures)} failed, {time.monotonic() - t_start:.1f}s")
    for f in R._failures:
        print(f"  FAILED: {short(f, 1500)}")
    return 1 if R._failures else 0


if __name__ == "__main__":
    sys.exit(main())
