"""Print a pytest-benchmark JSON file as a markdown table.

    python -m pytest benchmarks --benchmark-only --benchmark-json out.json
    python benchmarks/bench_to_markdown.py out.json

One row per benchmark: group, name (the implementation), dtype, median time,
IQR as a percentage of the median (the run's noise), ops/s (pytest-benchmark's
``ops``, 1/mean), the speed-up against the NumPy row of the same group and
dtype (NumPy median / this median, or the ratio of us_per_step when both rows
have one), for fastbp rows the speed-up against the best peer of the group
and dtype (the fastest of the NumPy, PyTorch and JAX rows, and which one it
was), and the recorded ``extra_info`` (us_per_step, percent of BLAS,
GFLOP/s, losses).
"""
import argparse
import json
import sys

#: extra_info keys shown, in this order, with their column labels
EXTRAS = [("us_per_step", "µs/step"), ("pct_of_blas", "% of BLAS"),
          ("gflops_per_s", "GFLOP/s"), ("ns_per_param", "ns/param"),
          ("loss_after_k", "loss@k"), ("loss_last", "loss after"),
          ("loss_last_epoch", "last epoch loss"), ("loss", "loss")]

#: the implementations fastbp is measured against
PEERS = ("numpy", "torch", "jax")


def fmt_time(seconds):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_value(key, value):
    if not isinstance(value, (int, float)):
        return str(value)
    if key == "pct_of_blas":
        return f"{value:.0f}%"
    if key.startswith("loss"):
        return f"{value:.5g}"
    return f"{value:.3g}"


def short_name(bench):
    params = bench.get("params") or {}
    if "impl" in params:
        return str(params["impl"])
    if "name" in params:  # trainer-step groups: the registry name
        return str(params["name"])
    return bench["name"].split("[")[0].removeprefix("test_")


def _dtype(bench):
    return (bench.get("params") or {}).get("dtype", "")


def rows_of(data, full_names=False):
    benches = data["benchmarks"]
    groups = list(dict.fromkeys(b.get("group") or "" for b in benches))
    peers = {}  # (group, dtype) -> the peer rows (NumPy's is the "vs numpy" baseline)
    for b in benches:
        if short_name(b) in PEERS:
            peers.setdefault((b.get("group"), _dtype(b)), []).append(b)
    order = {g: i for i, g in enumerate(groups)}
    rows = []
    for _, b in sorted(enumerate(benches),
                       key=lambda ib: (order[ib[1].get("group") or ""], str(_dtype(ib[1])),
                                       ib[0])):
        s = b["stats"]
        dtype = _dtype(b)
        extra = b.get("extra_info") or {}
        rivals = peers.get((b.get("group"), dtype), [])
        speedup = ""
        ref = next((r for r in rivals if short_name(r) == "numpy"), None)
        if ref is not None:
            speedup = speed_up(ref, b)
        best = ""
        if short_name(b) == "fastbp" and rivals:
            ratio, rival = min((speed_up(r, b), short_name(r)) for r in rivals)
            best = f"{ratio:.2f}x ({rival})"
        shown = [f"{label} {fmt_value(key, extra[key])}" for key, label in EXTRAS
                 if key in extra]
        rows.append([b.get("group") or "", b["name"] if full_names else short_name(b),
                     str(dtype), fmt_time(s["median"]),
                     f"{100 * s['iqr'] / s['median']:.0f}%", f"{s['ops']:,.0f}",
                     f"{speedup:.2f}x" if speedup else "", best,
                     ", ".join(shown)])
    return rows


def speed_up(ref, bench):
    """How many times faster ``bench`` is than ``ref`` by medians (by time per
    update when both have ``us_per_step``: their rounds differ in length)."""
    extra, ref_extra = bench.get("extra_info") or {}, ref.get("extra_info") or {}
    if "us_per_step" in extra and "us_per_step" in ref_extra:
        return ref_extra["us_per_step"] / extra["us_per_step"]
    return ref["stats"]["median"] / bench["stats"]["median"]


def to_markdown(data, full_names=False):
    head = ["group", "name", "dtype", "median", "IQR/median", "ops/s", "vs numpy",
            "vs best peer", "extra_info"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows_of(data, full_names):
        lines.append("| " + " | ".join(r) + " |")
    m = data.get("machine_info") or {}
    v = m.get("versions") or {}
    blas = m.get("blas")
    if isinstance(blas, dict):
        blas = ", ".join(f"{k}: {val}" for k, val in blas.items())
    notes = [f"{data.get('datetime', '')}",
             f"CPU {(m.get('cpu') or {}).get('brand_raw', m.get('processor', '?'))}, "
             f"{m.get('cores', '?')} cores; load average (1/5/15 min) "
             f"{m.get('loadavg_start', '?')} at start, {m.get('loadavg_end', '?')} at end",
             ", ".join(f"{k} {val}" for k, val in v.items()),
             f"BLAS {blas or '?'}"]
    return "\n".join(lines) + "\n\n" + "\n".join(f"* {n}" for n in notes if n.strip(", "))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", help="file written by pytest --benchmark-json")
    ap.add_argument("--full-names", action="store_true",
                    help="show pytest's test names instead of the implementation")
    args = ap.parse_args(argv)
    with open(args.json) as f:
        data = json.load(f)
    print(to_markdown(data, args.full_names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
