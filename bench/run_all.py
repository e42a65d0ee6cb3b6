"""Run every benchmark module in bench/ and write BENCHMARKS.md (machine, versions, one table each).

Run: .venv/bin/python -m bench.run_all [module ...]   (default: every bench_*.py)
"""
from __future__ import annotations

import datetime
import importlib
import os
import platform
import sys
import traceback
from pathlib import Path

from engine.system import library_versions

HERE = Path(__file__).resolve().parent


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except Exception:  # a benchmark report must not fail on a broken torch
        gpu = "unknown"
    return [f"- date: {datetime.datetime.now().isoformat(timespec='minutes')}",
            f"- machine: {platform.machine()}, {os.cpu_count()} cores, {cpu}; GPU: {gpu}",
            f"- Python {platform.python_version()}; " +
            ", ".join(f"{k} {v}" for k, v in library_versions().items())]


EARLIER = "_(kept from an earlier run of the suite: not measured in the run dated above)_"


def _kept_sections(rerun: set[str]) -> list[str]:
    """Sections of the existing BENCHMARKS.md for modules not measured in this run, marked as such."""
    path = HERE.parent / "BENCHMARKS.md"
    if not path.exists():
        return []
    sections: list[list[str]] = []
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            sections.append([line])
        elif sections and line != EARLIER:
            sections[-1].append(line)
    kept = []
    for sec in sections:
        body = sec[1:]
        while body and not body[0].strip():
            body.pop(0)
        if sec[0][3:].strip() not in rerun:
            kept += [sec[0], "", EARLIER, ""] + body
    return kept


def main(names: list[str]) -> int:
    modules = names or sorted(p.stem for p in HERE.glob("bench_*.py"))
    lines = ["# Benchmarks", "", "Written by `make bench` (`python -m bench.run_all`). Each value is a "
             "median of several runs; ratios compare numbers measured in the same run.", "",
             *machine(), ""]
    failed = 0
    for name in modules:
        print(f"== {name}", flush=True)
        try:
            rows = importlib.import_module(f"bench.{name}").run()
        except Exception:
            failed += 1
            lines += [f"## {name}", "", "```", traceback.format_exc(limit=3), "```", ""]
            continue
        lines += [f"## {name}", "", "| measurement | value | unit | ratio | baseline | target | note |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            ratio = f"{r['ratio']:.2f}×" if r.get("ratio") is not None else ""
            lines.append(f"| {r['name']} | {_fmt(r['value'])} | {r.get('unit', '')} | {ratio} | "
                         f"{r.get('baseline', '')} | {r.get('target', '')} | {r.get('note', '')} |")
        lines.append("")
    if names:  # a partial run keeps the other modules' sections from the last full run
        lines += _kept_sections(set(modules))
    (HERE.parent / "BENCHMARKS.md").write_text("\n".join(lines) + "\n")
    print(f"wrote BENCHMARKS.md ({len(modules)} modules, {failed} failed)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
