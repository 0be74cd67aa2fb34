#!/usr/bin/env python3
"""End-to-end tests of constrained decoding through `cserve serve` (JSON-RPC) over a socket.

Every schema in tests/schemas/ is sampled at temperature 1 with different seeds; each output
that ends must parse and validate with the `jsonschema` package (PyPI). Regex outputs are
checked with re.fullmatch, choices by membership, json_object by parsing. Greedy outputs with
and without forced-run batching (`--no-forced-runs`) must be identical. Bad constraints get
invalid-params errors naming the problem, and the server keeps serving.
Environment: CSERVE_BIN, CSERVE_MODEL. Options: -v (traffic), --samples N (default 2).
"""
import glob
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rpc_e2e as R  # noqa: E402  (Server, Client, check, result_of)

try:
    import jsonschema
except ImportError:
    print("python package jsonschema absent (scripts/setup.sh installs it into .venv): skipping")
    sys.exit(77)

SAMPLES = int(sys.argv[sys.argv.index("--samples") + 1]) if "--samples" in sys.argv else 2
MAX_TOKENS = 160
HERE = os.path.dirname(os.path.abspath(__file__))


def schemas():
    out = []
    for path in sorted(glob.glob(os.path.join(HERE, "schemas", "*.json"))):
        with open(path, encoding="utf-8") as f:
            out.append((os.path.basename(path), json.load(f)["schema"]))
    return out


def run_all(c, reqs, timeout=600):
    """Sends every (params) at once on one connection; returns the responses in order."""
    ids = [c.request("generate", p) for p in reqs]
    return [c.wait(i, timeout) for i in ids]


def prompt_for(name, schema):
    # short: the prompts' prefill would otherwise cost more than the generations
    return f"A JSON example ({name[4:-5].replace('_', ' ')}):\n"


def test_schemas(c):
    cases = schemas()
    R.check(f"the corpus has at least 100 schemas ({len(cases)})", len(cases) >= 100)
    reqs, meta = [], []
    for name, schema in cases:
        for k in range(SAMPLES):
            reqs.append({"prompt": prompt_for(name, schema), "json_schema": schema, "temperature": 1.0,
                         "seed": 1000 + k, "max_tokens": MAX_TOKENS})
            meta.append((name, schema, k))
    t0 = time.monotonic()
    resps = run_all(c, reqs)
    dt = time.monotonic() - t0
    ended = valid = 0
    for (name, schema, k), resp in zip(meta, resps):
        res = R.result_of(resp)
        if not R.check(f"{name} seed {k}: a result", res is not None, R.short(resp)):
            continue
        ch = res["choices"][0]
        if ch["finish_reason"] != "stop":
            continue  # cut by max_tokens: nothing to validate (the grammar had not ended)
        ended += 1
        try:
            doc = json.loads(ch["text"])
            jsonschema.validate(doc, schema)
            valid += 1
        except Exception as e:  # noqa: BLE001 - any failure is the test's finding
            R.check(f"{name} seed {k}: output parses and validates", False, f"{e}: {R.short(ch['text'])}")
    R.check(f"{valid} of {ended} finished outputs validate ({len(reqs)} samples, {len(reqs) - ended} cut by "
            f"max_tokens {MAX_TOKENS}, {dt:.0f} s)", valid == ended and ended >= len(reqs) * 3 // 4)


REGEXES = [
    r"\d{3}-\d{3}-\d{4}",
    r"(19|20)\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])",
    r"[a-z]{3,8}@[a-z]{3,8}\.(com|org|net)",
    r"(yes|no|maybe)",
    r"[A-Z][a-z]+( [A-Z][a-z]+){0,3}",
    r"((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)",
    r"-?(0|[1-9]\d{0,5})(\.\d{1,3})?",
    r"[^\n\"]{1,20}!",
    r"(é|ü|ß|日本)+",
]


def test_regex(c):
    reqs = [{"prompt": f"Example {i}:", "regex": rx, "temperature": 1.0, "seed": s, "max_tokens": 60}
            for i, rx in enumerate(REGEXES) for s in range(3)]
    for p, resp in zip(reqs, run_all(c, reqs)):
        ch = R.result_of(resp)
        ch = ch["choices"][0] if ch else None
        ok = ch is not None and (ch["finish_reason"] != "stop" or re.fullmatch(p["regex"], ch["text"]) is not None)
        R.check(f"regex {p['regex']!r} seed {p['seed']}: {ch and ch['finish_reason']} {ch and ch['text']!r}", ok,
                R.short(resp))


def test_choices_and_object(c):
    choices = ["red", "green", "blue", "dark red", "日本語"]
    reqs = [{"prompt": "My favourite colour is", "choices": choices, "temperature": 1.0, "seed": s, "max_tokens": 20}
            for s in range(6)]
    for resp in run_all(c, reqs):
        ch = R.choice0(resp)
        R.check(f"choices: {ch and ch['text']!r} is one of them and ends with stop",
                ch is not None and ch["text"] in choices and ch["finish_reason"] == "stop", R.short(resp))
    reqs = [{"prompt": "A JSON object describing a cat:", "json_object": True, "temperature": 0.8, "seed": s,
             "max_tokens": 120} for s in range(4)]
    for resp in run_all(c, reqs):
        ch = R.choice0(resp)
        ok = ch is not None
        if ok and ch["finish_reason"] == "stop":
            try:
                ok = isinstance(json.loads(ch["text"]), dict)
            except ValueError:
                ok = False
        R.check(f"json_object: {ch and ch['finish_reason']} {R.short(ch and ch['text'], 80)}", ok, R.short(resp))
    # a max_tokens cut in the middle: finish_reason length, never stop
    ch = R.choice0(R.gen(c, {"prompt": "x", "json_schema": {"type": "array", "items": {"type": "string"},
                                                             "minItems": 50}, "max_tokens": 5}))
    R.check("a cut in the middle of the grammar finishes with length", ch and ch["finish_reason"] == "length", ch)


def test_errors(c):
    bad = [
        ({"json_schema": {"type": "object", "patternProperties": {"a": {}}}}, "patternProperties"),
        ({"json_schema": {"type": "strin"}}, "strin"),
        ({"json_schema": {"$ref": "#/$defs/missing"}}, "missing"),
        ({"json_schema": "not a schema"}, "json_schema"),
        ({"regex": "(a"}, "regex"),
        ({"regex": "(?=lookahead)"}, "regex"),
        ({"regex": "(a|b)*a(a|b){20}"}, "regex"),  # 2^20 DFA states: past the cap
        ({"choices": []}, "choices"),
        ({"choices": ["a", 3]}, "choices"),
        ({"regex": "a", "choices": ["a"]}, "at most one"),
    ]
    for params, needle in bad:
        resp = R.gen(c, dict({"prompt": "x", "max_tokens": 4}, **params))
        err = resp.get("error") if isinstance(resp, dict) else None
        R.check(f"bad constraint {R.short(params, 60)}: invalid params naming {needle!r}",
                err is not None and err.get("code") == -32602 and needle in json.dumps(err), R.short(resp))
    ch = R.choice0(R.gen(c, {"prompt": "1, 2, 3,", "max_tokens": 4, "temperature": 0}))
    R.check("the server still serves after bad constraints", ch is not None, ch)


def greedy_outputs(c):
    reqs = [{"prompt": prompt_for(n, s), "json_schema": s, "temperature": 0, "max_tokens": 120}
            for n, s in schemas()[:24]]
    return [R.choice0(r) for r in run_all(c, reqs)]


def main():
    if not os.path.isfile(R.MODEL):
        print(f"model {R.MODEL} absent: skipping")
        return 77
    main_srv = R.Server("constrained", ["--max-model-len", "1024"])
    plain = R.Server("no-forced-runs", ["--max-model-len", "1024", "--no-forced-runs"])
    try:
        if not (main_srv.wait_ready() and plain.wait_ready()):
            print("FAIL  the servers did not start:\n" + "\n".join(main_srv.tail() + plain.tail()))
            return 1
        c = R.Client(main_srv.addr, timeout=600)
        c2 = R.Client(plain.addr, timeout=600)
        test_errors(c)
        test_choices_and_object(c)
        test_regex(c)
        test_schemas(c)
        a, b = greedy_outputs(c), greedy_outputs(c2)
        same = sum(1 for x, y in zip(a, b) if x and y and x["text"] == y["text"])
        R.check(f"greedy outputs with and without forced-run batching identical: {same} of {len(a)}", same == len(a),
                [(x and x["text"], y and y["text"]) for x, y in zip(a, b) if not (x and y and x["text"] == y["text"])][:3])
        st = R.stats(c)
        R.check("every block free at the end", st and st.get("kv_blocks_used") == 0, st)
    finally:
        main_srv.terminate()
        plain.terminate()
    print(f"{R._checks} checks, {len(R._failures)} failed")
    return 1 if R._failures else 0


if __name__ == "__main__":
    sys.exit(main())
