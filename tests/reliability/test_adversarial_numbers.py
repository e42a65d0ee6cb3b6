"""Issue 18, defect 1: every number read from a user or a link is checked for length and range
before any exact arithmetic, in time bounded by its length, and refused with a sentence.

The example was a kernel cell "1e999999999/3": Fraction built a billion-digit integer while holding
the interpreter lock, and the whole server stopped answering. Here every reader of user numbers
(kernel cells, the SGD page's comparison list, every URL row of every page) gets the hostile forms
— huge exponents as decimals and fractions, thousands or millions of digits, Python expressions,
other digit scripts — first in-process (a sentence each), then in a subprocess under its own
RLIMIT_CPU: if any of them took more than a few CPU-seconds the kernel would kill it (SIGXCPU),
whatever the machine's load, which a wall-clock assertion could not tell apart.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine import kernels, sgd
from engine.numbers import MAX_NUMBER_CHARS, NumberError, read_decimal, read_float, read_int
from ui import urlstate

ROOT = Path(__file__).resolve().parents[2]
CPU_SECONDS = 5          # the child's CPU budget for every variant together (they need ~0.1 s)
HUGE = 10_000_000        # characters in the longest texts (a 10 MB cell or URL value)

#: Texts a kernel cell (typed, or in a /kernels?k= link) must refuse with a sentence.
HOSTILE_CELLS = [
    "1e999999999/3", "3/1e999999999", "1e999999999", "-1E+999999999", "1e-999999999",
    "1.5e99999999999999999999", "1e999999999/1e999999999", "0.000001e999999999",
    "1e401", "1e-401/1", "9" * 5000, "1" + "0" * 4300, "1/" + "9" * 5000, "9" * 41,
    "10**999999999", "9**9**9**9", "2<<99999999", "(1e9)**(1e9)", "1e9999999999999999999999999",
    "١e999999999", "1e" + "9" * 30, "1" * HUGE, "1e" + "9" * HUGE, " " * HUGE + "1",
]
#: Learning-rate lists for the SGD page's comparison.
HOSTILE_RATE_LISTS = [
    "0.1, 1e999999999", "1e999999999, 0.1", "0.1, " + "9" * 5000, "0.1, 1/1e999999999",
    "0.1," * 1_000_000, "0.1, " + "1" * HUGE, "0.1, 10**999999999",
]
#: Values any URL row may be handed (kernels, SGD, Train tables), each must be refused or read fast.
HOSTILE_URL_VALUES = ["9" * 5000, "1" * HUGE, "1e999999999", "-" + "9" * 4301, "1e" + "9" * 5000,
                      ",".join(["1e999999999/3"] * 9), ",".join(["9" * 5000] * 9), "x" * HUGE]


def _url_rows() -> list[urlstate.Param]:
    return [p for page in ("kernels", "sgd", "train", "explore") for p in urlstate.table(page)]


@pytest.mark.parametrize("text", HOSTILE_CELLS, ids=lambda t: t[:24] + f"…({len(t)})")
def test_a_hostile_kernel_cell_is_one_short_sentence(text):
    with pytest.raises(kernels.KernelError) as err:
        kernels.parse_cell(text)
    message = str(err.value)
    assert 20 < len(message) < 300          # a sentence, never the megabyte echoed back
    assert message.endswith(".") and "Traceback" not in message


def test_a_hostile_cell_in_a_kernel_names_its_place():
    cells = ["0"] * 9
    cells[7] = "1e999999999/3"
    with pytest.raises(kernels.KernelError, match=r"Row 3, column 2: .*power of ten"):
        kernels.parse_kernel(cells)


@pytest.mark.parametrize("text,value", [("1e400/1e400", 1.0), ("1e-400/1e-399", 0.1),
                                        ("4/1e-5", 400_000.0), ("-1e6", -1e6), ("1e-400", 0.0),
                                        ("0." + "0" * 37 + "1", 1e-38)])
def test_exact_arithmetic_still_reads_every_reasonable_cell(text, value):
    assert kernels.parse_cell(text) == pytest.approx(value, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("text", HOSTILE_RATE_LISTS, ids=lambda t: t[:24] + f"…({len(t)})")
def test_a_hostile_learning_rate_list_is_one_short_sentence(text):
    with pytest.raises(sgd.SGDError) as err:
        sgd.parse_learning_rates(text)
    assert 20 < len(str(err.value)) < 400


@pytest.mark.parametrize("text", HOSTILE_URL_VALUES, ids=lambda t: t[:24] + f"…({len(t)})")
def test_every_url_row_refuses_or_reads_a_hostile_value(text):
    """Each row of each page's table: a ValueError with a short reason (load() shows it as a
    warning and keeps the default), or a value that fits the row."""
    for p in _url_rows():
        try:
            value = p.decode(text)
        except ValueError as exc:
            assert len(str(exc)) < 200, (p.url, str(exc)[:80])
            continue
        assert p.kind in ("str", "cells") and len(text) <= urlstate.MAX_URL_VALUE, p.url
        if p.kind == "cells":       # nine short texts; parse_kernel refuses them in a sentence
            with pytest.raises(kernels.KernelError):
                kernels.parse_kernel(value)


def test_the_shared_readers_refuse_before_any_arithmetic():
    for reader in (read_decimal, read_float, read_int):
        with pytest.raises(NumberError, match="too long"):
            reader("9" * (MAX_NUMBER_CHARS + 1))
    with pytest.raises(NumberError, match="exponent"):
        read_decimal("1e401")
    assert read_decimal("1e400") == 10 ** 400 and read_int("-42") == -42
    assert read_float(" 0.25 ") == 0.25


def test_every_hostile_number_is_refused_within_a_cpu_budget(tmp_path):
    """All the variants above, in a child process that may use CPU_SECONDS of CPU after its imports
    (RLIMIT_CPU; the kernel stops it with SIGXCPU past that). Before the fix the first cell alone
    needed minutes of CPU."""
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({"cells": HOSTILE_CELLS, "rates": HOSTILE_RATE_LISTS,
                                 "urls": HOSTILE_URL_VALUES}))
    code = textwrap.dedent(f"""
        import json, math, resource, sys, time
        from engine import kernels, sgd
        from ui import urlstate
        cases = json.load(open({str(cases)!r}))
        rows = [p for page in ("kernels", "sgd", "train", "explore") for p in urlstate.table(page)]
        used = resource.getrusage(resource.RUSAGE_SELF)
        limit = math.ceil(used.ru_utime + used.ru_stime) + {CPU_SECONDS}
        resource.setrlimit(resource.RLIMIT_CPU, (limit, limit + 1))
        start = time.process_time()
        refused = 0
        for text in cases["cells"]:
            try:
                kernels.parse_kernel([text] + ["0"] * 8)
            except kernels.KernelError:
                refused += 1
        for text in cases["rates"]:
            try:
                sgd.parse_learning_rates(text)
            except sgd.SGDError:
                refused += 1
        for text in cases["urls"]:
            for p in rows:
                try:
                    value = p.decode(text)
                    if p.kind == "cells":
                        kernels.parse_kernel(value)
                except ValueError:
                    refused += 1
        print(json.dumps({{"refused": refused, "cpu_s": time.process_time() - start,
                          "limit_s": limit}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT),
                                           "DLLAB_DATA": str(tmp_path / "data")})
    assert out.returncode == 0, f"killed or failed ({out.returncode}): {out.stderr[-2000:]}"
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["refused"] >= len(HOSTILE_CELLS) + len(HOSTILE_RATE_LISTS)
    assert result["cpu_s"] < CPU_SECONDS
    print(f"{result['refused']} refusals in {result['cpu_s']:.2f} CPU-s "
          f"(RLIMIT_CPU {result['limit_s']} s in all, {CPU_SECONDS} s after the imports)")
