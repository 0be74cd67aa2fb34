#!/usr/bin/env python3
"""Constrained against unconstrained generation through `cserve serve`: completion tokens per
second over the same concurrent load (32 requests, 16 at a time, temperature 0.8), for two
schemas (verbose keys: mostly forced tokens; a long free-text value), a regex, and the verbose
schema with forced-run batching off. The free-text and regex loads run every request to
max_tokens, like the unconstrained one. Prints a table.

    python3 bench/bench_constrained.py [--bin build/cserve] [--model PATH]
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import rpc_e2e as R  # noqa: E402

VERBOSE = {"type": "object", "properties": {
    "customer_identification_number": {"type": "integer", "minimum": 0, "maximum": 99999},
    "customer_preferred_contact_method": {"enum": ["electronic mail", "telephone call", "postal letter"]},
    "customer_has_accepted_terms_and_conditions": {"type": "boolean"},
    "customer_account_creation_year": {"type": "integer", "minimum": 1990, "maximum": 2030}},
    "required": ["customer_identification_number", "customer_preferred_contact_method",
                 "customer_has_accepted_terms_and_conditions", "customer_account_creation_year"]}
# long enough that every request runs to max_tokens, as the unconstrained load does: the
# same number of tokens in both, so tokens/s compares like with like
FREE = {"type": "object", "properties": {"title": {"type": "string", "minLength": 400, "maxLength": 600}},
        "required": ["title"]}


def load(c, extra, n=32, conc=16, max_tokens=96):
    t0 = time.monotonic()
    toks = 0
    for start in range(0, n, conc):
        ids = [c.request("generate", dict({"prompt": f"Record {start + i}:", "max_tokens": max_tokens,
                                            "temperature": 0.8, "seed": start + i}, **extra))
               for i in range(conc)]
        for i in ids:
            r = R.result_of(c.wait(i, 600))
            toks += r["usage"]["completion_tokens"] if r else 0
    dt = time.monotonic() - t0
    return toks, dt


def main():
    if "--bin" in sys.argv:
        R.BIN = sys.argv[sys.argv.index("--bin") + 1]
    if "--model" in sys.argv:
        R.MODEL = sys.argv[sys.argv.index("--model") + 1]
    a = R.Server("bench", ["--max-model-len", "1024"])
    b = R.Server("bench-noforced", ["--max-model-len", "1024", "--no-forced-runs"])
    try:
        assert a.wait_ready() and b.wait_ready()
        c, c2 = R.Client(a.addr, timeout=600), R.Client(b.addr, timeout=600)
        rows = [("unconstrained (ignore_eos)", c, {"ignore_eos": True}),
                ("json_schema, verbose keys", c, {"json_schema": VERBOSE}),
                ("json_schema, verbose keys, --no-forced-runs", c2, {"json_schema": VERBOSE}),
                ("json_schema, free-text values", c, {"json_schema": FREE}),
                ("regex [a-z ]{400,600}\\.", c, {"regex": "[a-z ]{400,600}\\."})]
        load(c, {"json_schema": VERBOSE}, n=4, conc=4)  # compile and warm the caches once
        load(c2, {"json_schema": VERBOSE}, n=4, conc=4)
        base = None
        print("| load | completion tokens | s | tokens/s | vs unconstrained |\n|---|---|---|---|---|")
        for name, cl, extra in rows:
            toks, dt = load(cl, extra)
            rate = toks / dt
            base = base or rate
            print(f"| {name} | {toks} | {dt:.1f} | {rate:.1f} | {rate / base:.2f}x |", flush=True)
    finally:
        a.terminate()
        b.terminate()


if __name__ == "__main__":
    main()
