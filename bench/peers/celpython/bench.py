#!/usr/bin/env python3
"""Peer benchmark: the csrgate ten-policy decision and the lone ``matches()`` rule, evaluated
by cel-python (``celpy``) over the values csrgate's own bench writes to cel-fixture.json.

Usage: python bench.py OUT.json [FIXTURE] [--runner interpreted|compiled]
  FIXTURE defaults to $CEL_FIXTURE, then <repo>/target/bench/cel-fixture.json.
  --runner picks celpy's runner class: InterpretedRunner (celpy's default, what run.sh
  measures) or CompiledRunner (transpiles each expression to Python).

Every expression is compiled (parsed) and turned into a program once; the activation is
converted to CEL values once; the timed loop only evaluates. Before timing, each expression
must return the CEL boolean true, or the script exits 1.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

PACKAGE = "cel-python"
WARMUP_NS = 500_000_000  # 0.5 s
SAMPLE_NS = 75_000_000  # target length of one sample batch: 75 ms
SAMPLES = 31

HERE = Path(__file__).resolve().parent


def fail(message: str) -> None:
    print(f"cel-python peer: {message}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description="cel-python peer benchmark")
    parser.add_argument("out", type=Path, help="where to write the JSON result")
    parser.add_argument("fixture", nargs="?", help="cel-fixture.json written by csrgate's bench")
    parser.add_argument("--runner", choices=["interpreted", "compiled"], default="interpreted")
    args = parser.parse_args()
    out_path = args.out
    fixture_path = Path(
        args.fixture or os.environ.get("CEL_FIXTURE")
        or HERE / "../../../target/bench/cel-fixture.json"
    ).resolve()
    runner_class = celpy.CompiledRunner if args.runner == "compiled" else celpy.InterpretedRunner

    try:
        # json keeps int and float apart, so JSON integers become CEL int (IntType) below.
        fixture = json.loads(fixture_path.read_text(encoding="utf-8"))
        activation = fixture["activation"]
        policies = fixture["policies"]
        matches_rule = fixture["matchesRule"]
    except (OSError, ValueError, KeyError) as err:
        fail(f"cannot read fixture {fixture_path}: {err!r}")

    # The three variables csrgate declares for a CSR, converted to CEL values once.
    context = {
        "object": json_to_cel(activation["object"]),
        "x509": json_to_cel(activation["x509"]),
        "node": json_to_cel(activation["node"]),
    }

    # celpy keeps one Lark parser per process, built with the tree class of the first
    # Environment; only one runner class is used per process here.
    env = celpy.Environment(runner_class=runner_class)
    errors = []

    def compile_one(where, text):
        try:
            return env.program(env.compile(text))
        except Exception as err:  # celpy raises CELParseError and others
            errors.append(f"{where}: compile failed: {type(err).__name__}: {err}\n    {text}")
            return None

    compiled = [
        {
            "name": p["name"],
            "matchConditions": [
                compile_one(f"{p['name']} matchConditions[{i}]", t)
                for i, t in enumerate(p["matchConditions"])
            ],
            "validations": [
                compile_one(f"{p['name']} validations[{i}]", t)
                for i, t in enumerate(p["validations"])
            ],
        }
        for p in policies
    ]
    matches_program = compile_one("matchesRule", matches_rule)
    if errors:
        fail("expressions rejected:\n  " + "\n  ".join(errors))

    def is_true(value) -> bool:
        # celpy may return a CELEvalError as a value instead of raising it.
        return isinstance(value, celtypes.BoolType) and bool(value)

    def check_true(where, text, program):
        try:
            value = program.evaluate(context)
        except Exception as err:
            errors.append(f"{where}: evaluation error: {type(err).__name__}: {err}\n    {text}")
            return
        if isinstance(value, CELEvalError) or not is_true(value):
            errors.append(f"{where}: returned {type(value).__name__} {value!r}, not true\n    {text}")

    for p, c in zip(policies, compiled):
        for i, t in enumerate(p["matchConditions"]):
            check_true(f"{p['name']} matchConditions[{i}]", t, c["matchConditions"][i])
        for i, t in enumerate(p["validations"]):
            check_true(f"{p['name']} validations[{i}]", t, c["validations"][i])
    check_true("matchesRule", matches_rule, matches_program)
    if errors:
        fail("expressions did not evaluate to true:\n  " + "\n  ".join(errors))

    expressions = sum(len(p["matchConditions"]) + len(p["validations"]) for p in policies)
    plan = [
        ([m.evaluate for m in c["matchConditions"]], [v.evaluate for v in c["validations"]])
        for c in compiled
    ]

    def decision() -> int:
        """Per policy: all matchConditions must hold, then every validation. Returns the
        number of policies that matched and passed."""
        approved = 0
        for conditions, validations in plan:
            if not all(is_true(m(context)) for m in conditions):
                continue
            if all(is_true(v(context)) for v in validations):
                approved += 1
        return approved

    matches_eval = matches_program.evaluate

    def matches_once() -> int:
        return 1 if is_true(matches_eval(context)) else 0

    def batch(fn, n, expected) -> int:
        sink = 0
        t0 = time.perf_counter_ns()
        for _ in range(n):
            sink += fn()
        elapsed = time.perf_counter_ns() - t0
        if sink != expected * n:
            fail(f"benchmark loop saw a non-true result ({sink} != {expected * n})")
        return elapsed

    def measure(fn, expected):
        # Warm up ~0.5 s while calibrating the cost of one call, then size batches to ~75 ms.
        calls, n = 0, 1
        start = time.perf_counter_ns()
        while time.perf_counter_ns() - start < WARMUP_NS:
            batch(fn, n, expected)
            calls += n
            n = min(n * 2, 1 << 20)
        per_call_ns = (time.perf_counter_ns() - start) / calls
        batch_size = max(1, round(SAMPLE_NS / per_call_ns))
        per_call_us = [batch(fn, batch_size, expected) / batch_size / 1000 for _ in range(SAMPLES)]
        return {
            "median": statistics.median(per_call_us),
            "min": min(per_call_us),
            "max": max(per_call_us),
            "batch": batch_size,
        }

    d = measure(decision, len(compiled))
    m = measure(matches_once, 1)

    version = metadata.version(PACKAGE)
    runtime = f"{platform.python_implementation()} {platform.python_version()}"
    result = {
        "engine": "cel-python",
        "package": PACKAGE,
        "version": version,
        "runtime": runtime,
        "runner": runner_class.__name__,
        "fixture": str(fixture_path),
        "policies": len(policies),
        "expressions": expressions,
        "decision_us_median": round(d["median"], 3),
        "decision_us_min": round(d["min"], 3),
        "decision_us_max": round(d["max"], 3),
        "decision_batch": d["batch"],
        "matches_rule_us_median": round(m["median"], 3),
        "matches_rule_us_min": round(m["min"], 3),
        "matches_rule_us_max": round(m["max"], 3),
        "matches_rule_batch": m["batch"],
        "samples": SAMPLES,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"cel-python {version} ({runtime}, {result['runner']}): decision of {len(policies)} "
        f"policies / {expressions} expressions {result['decision_us_median']} us median, "
        f"matchesRule {result['matches_rule_us_median']} us median ({SAMPLES} samples)"
    )


if __name__ == "__main__":
    main()
