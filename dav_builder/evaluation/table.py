"""The benchmark report as a table shaped like the paper's: one row per model, AbsRel, delta1 and
(for videos with poses) TAE per data set."""

from __future__ import annotations


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def markdown(reports: list[dict]) -> str:
    """Markdown table of one or more reports (each from :func:`evaluate_benchmarks`, plus ``model``)."""
    names: list[str] = []
    for r in reports:
        names += [n for n in r["benchmarks"] if n not in names]
    has_tae = {n: any(r["benchmarks"].get(n, {}).get("tae") is not None for r in reports) for n in names}
    head, rule = ["Model"], ["---"]
    for n in names:
        title = next(r["benchmarks"][n]["title"] for r in reports if n in r["benchmarks"])
        cols = ["AbsRel↓", "δ1↑"] + (["TAE↓"] if has_tae[n] else [])
        head += [f"{title} {c}" for c in cols]
        rule += ["---:"] * len(cols)
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(rule) + " |"]
    for r in reports:
        row = [r.get("model", "?")]
        for n in names:
            b = r["benchmarks"].get(n, {})
            row += [_fmt(b.get("abs_rel")), _fmt(b.get("delta1"))] + ([_fmt(b.get("tae"))] if has_tae[n] else [])
        lines.append("| " + " | ".join(row) + " |")
    p = reports[0].get("protocol", {}) if reports else {}
    note = (f"\nAbsRel and TAE as ratios (lower is better), δ1 as a share (higher is better). Protocol: alignment per "
            f"{p.get('fit')}, averaged per {p.get('average')}, depth caps: {p.get('caps')}, TAE: {p.get('tae')}.")
    extra = []
    for r in reports:
        bits = [f"{r['benchmarks'][n]['title']}: {r['benchmarks'][n]['clips']} clips / {r['benchmarks'][n]['frames']} frames"
                for n in names if n in r["benchmarks"]]
        extra.append(f"{r.get('model', '?')} (steps {r.get('steps')}, ensemble {r.get('ensemble')}, "
                     f"max side {r.get('max_res')} px): " + "; ".join(bits) + ".")
    return "\n".join(lines) + "\n" + note + "\n" + "\n".join(extra) + "\n"
