"""Load-profile plots for the HTTP benchmarks (matplotlib, a dev extra).

One function, :func:`plot_load_profile`: throughput and p50/p99 latency against offered
load, as a PNG written next to the benchmark's JSON. The registry HTTP benchmark
(``bench_registry_http``) and the relay benchmark use it.

A point is a mapping with the keys:

- ``offered``: the offered load on the x axis (for a closed-loop load generator, the
  number of requests kept in flight; for an open loop, requests/s sent);
- ``per_second``: the throughput achieved (successful requests or items per second);
- ``p50_ms`` and ``p99_ms``: latency percentiles in milliseconds.

Example::

    from benchmarks.plot import plot_load_profile

    plot_load_profile(
        [{"offered": 4, "per_second": 410.0, "p50_ms": 9.1, "p99_ms": 21.0}, ...],
        "POST /v1/authorize", "results/registry_http.authorize.png",
        ceiling=992.0, ceiling_label="bare verification", latency_target_ms=50.0,
    )
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

REQUIRED_KEYS = ("offered", "per_second", "p50_ms", "p99_ms")


def plot_load_profile(
    points: Sequence[Mapping[str, float]],
    title: str,
    out_png: str | Path,
    *,
    x_label: str = "offered load (requests in flight)",
    y_label: str = "throughput (requests/s)",
    ceiling: float | None = None,
    ceiling_label: str = "limit",
    latency_target_ms: float | None = None,
) -> Path:
    """Write a two-panel PNG to ``out_png``: throughput against offered load (with an
    optional horizontal ``ceiling``, e.g. the bare verification rate measured in the same
    run), and p50/p99 latency against offered load (log scale, with an optional
    ``latency_target_ms`` line). Returns the path written.

    Raises ``ValueError`` when ``points`` is empty or a point lacks one of
    :data:`REQUIRED_KEYS` or holds a negative value.
    """
    if not points:
        raise ValueError("no points to plot")
    for point in points:
        missing = [k for k in REQUIRED_KEYS if k not in point]
        if missing:
            raise ValueError(f"a point lacks {', '.join(missing)}")
        if any(float(point[k]) < 0 for k in REQUIRED_KEYS):
            raise ValueError("negative value in a point")

    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    ordered = sorted(points, key=lambda p: float(p["offered"]))
    x = [float(p["offered"]) for p in ordered]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7.0, 6.0), constrained_layout=True)
    top.plot(x, [float(p["per_second"]) for p in ordered], marker="o", label="measured")
    if ceiling is not None:
        top.axhline(ceiling, color="grey", linestyle="--", label=f"{ceiling_label} ({ceiling:,.0f}/s)")
    top.set_ylabel(y_label)
    top.set_ylim(bottom=0)
    top.grid(True, alpha=0.3)
    top.legend(loc="lower right")
    top.set_title(title)

    bottom.plot(x, [max(float(p["p50_ms"]), 1e-3) for p in ordered], marker="o", label="p50")
    bottom.plot(x, [max(float(p["p99_ms"]), 1e-3) for p in ordered], marker="s", label="p99")
    if latency_target_ms is not None:
        bottom.axhline(latency_target_ms, color="red", linestyle=":", label=f"target p99 {latency_target_ms:g} ms")
    bottom.set_yscale("log")
    bottom.set_ylabel("latency (ms)")
    bottom.set_xlabel(x_label)
    if len(x) > 1 and x[0] > 0 and x[-1] / x[0] >= 8:
        bottom.set_xscale("log", base=2)
    bottom.set_xticks(x)
    bottom.set_xticklabels([f"{v:g}" for v in x])
    bottom.grid(True, which="both", alpha=0.3)
    bottom.legend(loc="upper left")

    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
