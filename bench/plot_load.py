#!/usr/bin/env python3
"""Draw a tensorcast-load result: latency percentiles and throughput over
time, and the latency distribution.

    python3 bench/plot_load.py RESULT.json --out FILE.png
    tensorcast-load --plot=RESULT.json --out=FILE.png   (runs this script)

RESULT.json is what `tensorcast-load --json=FILE` writes. Needs matplotlib;
without it, prints one line and exits 2.
"""
import argparse
import json
import sys
from typing import NoReturn


def fail(message: str) -> NoReturn:
    print(f"plot_load: {message}", file=sys.stderr)
    sys.exit(2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", help="JSON written by tensorcast-load --json")
    parser.add_argument("--out", required=True, help="PNG (or PDF, SVG) to write")
    args = parser.parse_args()
    try:
        with open(args.result, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read {args.result}: {e}")
    if "series" not in doc or "latency_us" not in doc:
        fail(f"{args.result} is not a tensorcast-load result")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        fail(f"matplotlib is not installed for {sys.executable} "
             "(pip install matplotlib)")

    series = doc["series"]
    t = [p["t_s"] + p["interval_s"] for p in series]
    open_loop = doc.get("config", {}).get("loop") == "open"
    fig, (ax_lat, ax_tput, ax_pct) = plt.subplots(
        3, 1, figsize=(9, 10), constrained_layout=True)
    fig.suptitle(f"tensorcast-load: {doc.get('description', '')}\n"
                 f"{doc['requests']} requests in {doc['duration_s']:.2f} s, "
                 f"{doc['requests_per_s']:.0f} req/s, "
                 f"{doc['bytes_per_s'] / 1e9:.3f} GB/s, "
                 f"{sum(doc['errors'].values())} errors", fontsize=10)

    label = "from scheduled send" if open_loop else "latency"
    for key, style in (("p50_us", "-"), ("p90_us", "--"), ("p99_us", "-."),
                       ("max_us", ":")):
        ys = [p[key] / 1e3 for p in series]
        ax_lat.plot(t, ys, style, marker=".", label=key[:-3])
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel(f"{label} (ms)")
    ax_lat.set_xlabel("time since warm-up (s)")
    ax_lat.set_title("latency percentiles per second", fontsize=9)
    ax_lat.grid(True, which="both", alpha=0.3)
    ax_lat.legend(fontsize=8)

    ax_tput.plot(t, [p["requests_per_s"] for p in series], marker=".",
                 color="tab:blue", label="req/s")
    ax_tput.set_ylabel("requests/s", color="tab:blue")
    ax_tput.set_xlabel("time since warm-up (s)")
    ax_tput.set_ylim(bottom=0)
    ax_tput.grid(True, alpha=0.3)
    if doc.get("bytes", 0) > 0:
        ax_bytes = ax_tput.twinx()
        ax_bytes.plot(t, [p["bytes_per_s"] / 1e9 for p in series], marker=".",
                      color="tab:orange", label="GB/s")
        ax_bytes.set_ylabel("payload GB/s", color="tab:orange")
        ax_bytes.set_ylim(bottom=0)
    errors = [p["errors"] for p in series]
    if any(errors):
        ax_tput.bar(t, errors, width=0.3, color="tab:red", alpha=0.5,
                    label="errors")
    ax_tput.set_title("throughput per second", fontsize=9)

    # Percentile spectrum: x = 1 / (1 - p) on a log axis, as HdrHistogram.
    pts = [p for p in doc.get("percentiles", []) if p["p"] < 100]
    xs = [1 / (1 - p["p"] / 100) for p in pts]
    ax_pct.plot(xs, [p["latency_us"] / 1e3 for p in pts], marker="o",
                label=label)
    if open_loop:
        ax_pct.plot(xs, [p["service_time_us"] / 1e3 for p in pts], marker="x",
                    label="service time")
    ax_pct.set_xscale("log")
    ax_pct.set_xticks(xs)
    ax_pct.set_xticklabels([f"{p['p']:g}" for p in pts], fontsize=7,
                           rotation=45)
    ax_pct.set_xlabel("percentile")
    ax_pct.set_ylabel("ms")
    ax_pct.set_title("latency by percentile (whole run)", fontsize=9)
    ax_pct.grid(True, which="both", alpha=0.3)
    ax_pct.legend(fontsize=8)

    try:
        fig.savefig(args.out, dpi=110)
    except OSError as e:
        fail(f"cannot write {args.out}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
