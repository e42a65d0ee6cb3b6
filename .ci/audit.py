"""Known vulnerabilities in the pinned requirements, asked of PyPI's JSON API (the data pip-audit's
"pypi" service reads), with no packages to install. Run by `make test`, so CI audits every pin.

For each `name==version` line: the release's own JSON lists the advisories that affect it. Where a
mirror serves only a project's newest-release JSON, that list still answers for a pin that *is* the
newest release; any other pin is reported as not checked, with the reason.

Exit status: 1 if any pin has an advisory that is not withdrawn; 1 also for unchecked pins with
--strict; otherwise 0 (an unreachable service is a warning, not a pass: the summary says so).

    python .ci/audit.py requirements.txt requirements-dev.txt [--strict] [--index URL]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

INDEX = os.environ.get("DLLAB_AUDIT_INDEX", "https://pypi.org/pypi")
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.+!_-]+)\s*(?:;.*)?$")


@dataclass
class Finding:
    name: str
    version: str
    status: str                       # "ok" | "vulnerable" | "unchecked"
    advisories: list[str] = field(default_factory=list)
    reason: str = ""


def read_pins(paths: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """(name, version) of every `name==version` line; plus the lines that are not exact pins."""
    pins, loose = [], []
    for path in paths:
        for raw in Path(path).read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("-"):     # comments, -r/-c/--index options
                continue
            m = PIN.match(line)
            if m:
                pins.append((m.group(1), m.group(2)))
            else:
                loose.append(f"{path}: {line}")
    return pins, loose


def _get_json(url: str, timeout: float) -> dict | None:
    """The JSON at url, None on 404; other failures raise OSError with a short reason."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise OSError(f"HTTP {e.code} from the index") from e
    except (urllib.error.URLError, TimeoutError, ValueError) as e:
        raise OSError(f"index unreachable ({getattr(e, 'reason', e)})") from e


def _live(vulns: list[dict]) -> list[str]:
    out = []
    for v in vulns or []:
        if v.get("withdrawn"):
            continue
        fixed = ", ".join(v.get("fixed_in") or []) or "no fixed release listed"
        out.append(f"{v.get('id', '?')} (fixed in {fixed})")
    return out


def check(name: str, version: str, index: str = INDEX, timeout: float = 20.0) -> Finding:
    """Look one pin up; never raises."""
    try:
        release = _get_json(f"{index}/{name}/{version}/json", timeout)
        if release is not None:
            adv = _live(release.get("vulnerabilities", []))
            return Finding(name, version, "vulnerable" if adv else "ok", adv)
        project = _get_json(f"{index}/{name}/json", timeout)
        if project is None:
            return Finding(name, version, "unchecked", reason="the index does not know this project")
        newest = project.get("info", {}).get("version")
        if newest != version:
            return Finding(name, version, "unchecked",
                           reason=f"this index answers only for the newest release ({newest})")
        adv = _live(project.get("vulnerabilities", []))
        return Finding(name, version, "vulnerable" if adv else "ok", adv)
    except OSError as e:
        return Finding(name, version, "unchecked", reason=str(e))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Audit pinned requirements against PyPI advisories.")
    ap.add_argument("files", nargs="+")
    ap.add_argument("--strict", action="store_true", help="fail when a pin cannot be checked")
    ap.add_argument("--index", default=INDEX)
    ap.add_argument("--timeout", type=float, default=20.0)
    a = ap.parse_args(argv)
    pins, loose = read_pins(a.files)
    findings = [check(n, v, a.index, a.timeout) for n, v in pins]
    for f in findings:
        if f.status == "vulnerable":
            print(f"VULNERABLE {f.name}=={f.version}: {'; '.join(f.advisories)}")
        elif f.status == "unchecked":
            print(f"not checked {f.name}=={f.version}: {f.reason}")
    for line in loose:
        print(f"not pinned exactly, not checked: {line}")
    bad = [f for f in findings if f.status == "vulnerable"]
    unchecked = [f for f in findings if f.status == "unchecked"]
    ok = len(findings) - len(bad) - len(unchecked)
    print(f"audit: {len(findings)} pins, {ok} without known advisories, {len(bad)} vulnerable, "
          f"{len(unchecked) + len(loose)} not checked")
    if bad or (a.strict and (unchecked or loose)):
        return 1
    if unchecked and len(unchecked) == len(findings):
        print("audit WARNING: no pin could be checked (see the reasons above)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
