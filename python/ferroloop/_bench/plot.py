"""The chart of ``ferroloop bench --plot OUT.png``: one panel per family (scheduling,
network), a group of horizontal bars per workload, one bar per loop: its operations per
second divided by the reference loop's (asyncio when it ran, otherwise the first loop), so
workloads of very different rates share an axis. matplotlib is imported here only."""

COLORS = {"ferroloop": "#e4572e", "asyncio": "#8c8c8c", "uvloop": "#4c78a8",
          "rloop": "#54a24b", "mio": "#b279a2"}
EXTRA = ["#f2cf5b", "#72b7b2", "#9d755d", "#ff9da6"]


def plot(path, doc, loops, workloads):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = doc["stats"]
    fams = [f for f in ("scheduling", "network")
            if any(doc["workloads"][wl]["family"] == f for wl in workloads)]
    if not fams or not loops:
        raise SystemExit("ferroloop bench: nothing to plot")
    ref = "asyncio" if "asyncio" in loops else loops[0]
    colors, extra = {}, iter(EXTRA)
    for lp in loops:
        colors[lp] = COLORS.get(lp) or next(extra, "#333333")

    per_fam = {f: [wl for wl in workloads if doc["workloads"][wl]["family"] == f]
               for f in fams}
    rows = max(len(v) for v in per_fam.values())
    fig, axes = plt.subplots(1, len(fams), figsize=(6.5 * len(fams), 1.4 + 0.62 * rows),
                             squeeze=False)
    bar_h = 0.8 / len(loops)
    for ax, fam in zip(axes[0], fams):
        wls = per_fam[fam]
        top = 0.0
        labels = []
        for i, wl in enumerate(wls):
            st = stats[wl]
            base_lp = ref if (st.get(ref) or {}).get("ops_per_s") else next(
                (lp for lp in loops if (st.get(lp) or {}).get("ops_per_s")), None)
            base = (st.get(base_lp) or {}).get("ops_per_s") if base_lp else None
            labels.append(wl if base_lp in (ref, None) else f"{wl}\n(vs {base_lp})")
            for j, lp in enumerate(loops):
                y = i + (j - (len(loops) - 1) / 2) * bar_h
                v = (st.get(lp) or {}).get("ops_per_s")
                if lp not in st:
                    continue
                if not v or not base:
                    ax.text(0.02, y, "n/a", va="center", fontsize=7, color="#555555",
                            transform=ax.get_yaxis_transform())
                    continue
                r = v / base
                top = max(top, r)
                ax.barh(y, r, height=bar_h * 0.92, color=colors[lp])
                ax.text(r, y, f" {r:.2f}×", va="center", fontsize=7)
        ax.set_yticks(range(len(wls)))
        ax.set_yticklabels(labels, fontsize=9)
        ax.set_ylim(len(wls) - 0.5, -0.5)
        ax.set_xlim(0, max(top, 1.0) * 1.18)
        ax.axvline(1.0, color="#444444", linewidth=0.8, linestyle="--")
        ax.set_xlabel(f"operations per second relative to {ref} (higher is better)",
                      fontsize=9)
        ax.set_title(f"{fam} workloads", fontsize=11)
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[lp]) for lp in loops]
    names = [f"{lp} {doc['loops'].get(lp, {}).get('version', '')}".strip()
             if lp in doc["loops"] else f"{lp} (Rust echo floor)" for lp in loops]
    fig.legend(handles, names, loc="lower center", ncol=len(loops), fontsize=9,
               frameon=False)
    m = doc["machine"]
    quick = " --quick" if doc["settings"].get("quick") else ""
    fig.suptitle(f"ferroloop bench{quick} (median ops/s ÷ {ref}'s)\n"
                 f"Python {doc['python']} · {m['cpu']} · {m['cores']} cores · "
                 f"{doc['date'][:10]}", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
