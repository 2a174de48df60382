#!/usr/bin/env python3
"""Summarises proxy_overhead runs of two proxy binaries (before/after a change) into one
small JSON: per run, the added latency at 1000 req/s (non-streaming), the proxy's CPU per
request there, and the added time to first byte / inter-chunk gap of streams.

Usage: stream_metrics_ab.py OUT.json LABEL=DIR [LABEL=DIR ...]
  (DIR holds a proxy_overhead.json written with ZAI_BENCH_OUT=DIR)
"""
import json
import sys


def summary(path):
    d = json.load(open(path))
    r = next(x for x in d["rates"] if x["rate"] == 1000.0 and not x["stream"])
    s = d["streams"]
    return {
        "proxy": d["proxy_program"],
        "load_average_start": d["machine"]["load_average"][0],
        "added_1000rps_p50_ms": round(r["added_latency"]["p50_ms"], 3),
        "added_1000rps_p99_ms": round(r["added_latency"]["p99_ms"], 3),
        "cpu_us_per_request_1000rps": round(r["proxy_cpu_us_per_request"], 1),
        "streams_added_ttfb_p50_ms": round(s["added_ttfb"]["p50_ms"], 3),
        "streams_added_ttfb_p99_ms": round(s["added_ttfb"]["p99_ms"], 3),
        "streams_added_gap_p50_ms": round(s["added_gap"]["p50_ms"], 3),
        "streams_added_gap_p99_ms": round(s["added_gap"]["p99_ms"], 3),
    }


def main():
    out, runs = sys.argv[1], sys.argv[2:]
    result = []
    for arg in runs:
        label, _, directory = arg.partition("=")
        entry = {"label": label}
        entry.update(summary(f"{directory}/proxy_overhead.json"))
        result.append(entry)
    json.dump({"runs": result}, open(out, "w"), indent=1)
    for e in result:
        print(e["label"], {k: v for k, v in e.items() if k not in ("label", "proxy")})


if __name__ == "__main__":
    main()
