#!/usr/bin/env python3
"""Side by side: two or more `traverse evaluate` reports (JSON), one row per setting and attribute.

    python3 scripts/compare_evaluations.py OLD.json NEW.json [MORE.json ...]

Prints CFRT (swap images, with its 95% interval where the report has one, then interpolations) and the
classifier's positive rate on the neutral images (where the report has it) and at the first and last swap point
of each report, then each report's mean CFRT, as a Markdown table; then, where the reports have them, the side
effects (per style, the share of swap images in which another label's decision differs from the neutral
image's) and their mean. Standard library only.
"""
import json
import sys


def rows(report):
    return {(s["setting"], s["attribute"]): s for s in report["scores"]}


def cell(score):
    if score is None:
        return "–"
    rate = score["positive_rate"]
    neutral = score.get("neutral_positive_rate")
    start = "" if neutral is None else f"{neutral:.2f}, "
    interpolated = score["cfrt_interpolated"]
    interpolated = "–" if interpolated is None else f"{interpolated:.2f}"
    interval = score.get("cfrt_interval")
    interval = "" if interval is None else f" [{interval[0]:.2f}, {interval[1]:.2f}]"
    return f'{score["cfrt"]:.2f}{interval} / {interpolated} ({start}{rate[0]:.2f}→{rate[-1]:.2f})'


def main(paths):
    if len(paths) < 2:
        sys.exit(__doc__)
    reports = [rows(json.load(open(p))) for p in paths]
    keys = list(dict.fromkeys(k for r in reports for k in r))
    print("| setting | attribute | " + " | ".join(paths) + " |")
    print("|---|---|" + "---|" * len(paths))
    for key in keys:
        print(f"| {key[0]} | {key[1]} | " + " | ".join(cell(r.get(key)) for r in reports) + " |")
    means = [sum(s["cfrt"] for s in r.values()) / max(len(r), 1) for r in reports]
    print("| mean CFRT | | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    print("\ncells: CFRT of swap images [95% interval] / of interpolations (positive rate [on the neutral images,] at the "
          "first → last swap point)")
    side_effects(paths, reports, keys)


def side_effects(paths, reports, keys):
    """Side effects per style and other label, one column per report (– where a report has none)."""
    labels = list(dict.fromkeys(
        label for r in reports for s in r.values() for label, _ in s.get("side_effects", [])))
    if not labels:
        return
    print("\n| setting | style | other label | " + " | ".join(paths) + " |")
    print("|---|---|---|" + "---|" * len(paths))
    totals = [[] for _ in reports]
    for key in keys:
        for label in labels:
            if label == key[1]:
                continue
            cells = []
            for i, r in enumerate(reports):
                rate = dict(r[key].get("side_effects", [])).get(label) if key in r else None
                if rate is not None:
                    totals[i].append(rate)
                cells.append("–" if rate is None else f"{rate:.2f}")
            if any(c != "–" for c in cells):
                print(f"| {key[0]} | {key[1]} | {label} | " + " | ".join(cells) + " |")
    means = ["–" if not t else f"{sum(t) / len(t):.3f}" for t in totals]
    print("| mean side effect | | | " + " | ".join(means) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
