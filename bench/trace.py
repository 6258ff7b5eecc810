#!/usr/bin/env python3
"""Per-CSR trace of one burst: where the slowest decisions spent their time.

Joins the bench's `csrs.tsv` (create sent, condition seen by the bench's watch) with the
controller's debug log (`csrgate.log`), both written under `CSRGATE_BENCH_TRACE=<dir>` with
`RUST_LOG=warn,csrgate_controller::csr=debug,csrgate_controller::controller=debug`
(docs/development.md, "Tracing a burst"). Usage: bench/trace.py <dir> [N]; N (default: all
lines of csrs.tsv) takes the last N lines, that is the last burst run.

Stages, in milliseconds:
  watch    create sent -> the controller's watch sees the CSR
  queue    watch -> the reconcile starts (the controller's work queue)
  slot     reconcile start -> an evaluation slot is acquired
  eval     slot -> evaluation done
  write    evaluation done -> the approval write returned ("decision written")
  seen     write returned -> the bench's watch sees the condition
"""
import re
import sys
from datetime import datetime, timezone

LINE = re.compile(r"^(\S+Z)\s+\w+\s+(.*)$")
CSR = re.compile(r"csr=(\S+?)[\s}]")
EVENTS = {
    "CSR watch event": "watch",
    "reconcile started": "start",
    "evaluation slot acquired": "slot",
    "evaluation done": "eval",
    "decision written": "written",
}
STAGES = [("watch", "sent", "watch"), ("queue", "watch", "start"), ("slot", "start", "slot"),
          ("eval", "slot", "eval"), ("write", "eval", "written"), ("seen", "written", "decided")]


def unix_us(stamp):
    at = datetime.strptime(stamp[:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f")
    return int(at.replace(tzinfo=timezone.utc).timestamp() * 1e6)


def main():
    directory = sys.argv[1]
    rows = open(f"{directory}/csrs.tsv").read().splitlines()
    if len(sys.argv) > 2:
        rows = rows[-int(sys.argv[2]):]
    csrs = {}
    for row in rows:
        name, sent, decided, _ = row.split("\t")
        csrs[name] = {"sent": int(sent), "decided": int(decided)}
    first_sent = min(c["sent"] for c in csrs.values())
    for line in open(f"{directory}/csrgate.log", errors="replace"):
        match = LINE.match(line)
        if not match:
            continue
        for text, key in EVENTS.items():
            if text in match.group(2):
                name = CSR.search(match.group(2) + " ")
                csr = csrs.get(name.group(1)) if name else None
                if csr is None:
                    break
                at = unix_us(match.group(1))
                if at < first_sent:
                    break
                # The first watch event and reconcile start; the last of the others.
                if key in ("watch", "start"):
                    csr.setdefault(key, at)
                else:
                    csr[key] = at
                    csr.setdefault("starts", 0)
                if key == "start":
                    csr["starts"] = csr.get("starts", 0) + 1
                break
    complete = [(n, c) for n, c in csrs.items() if all(k in c for k in ("watch", "start", "slot", "eval", "written"))]
    complete.sort(key=lambda item: item[1]["decided"] - item[1]["sent"])
    print(f"{len(complete)} of {len(csrs)} CSRs traced from create to condition")
    header = "csr            created_at_s  total" + "".join(f"{s:>8}" for s, _, _ in STAGES) + "  starts"
    print("\nslowest 10 (ms; created_at_s is seconds after the burst's first create):")
    print(header)
    for name, c in complete[-10:]:
        stages = "".join(f"{(c[b] - c[a]) / 1000:8.0f}" for _, a, b in STAGES)
        print(f"{name:<14} {(c['sent'] - first_sent) / 1e6:12.1f} {(c['decided'] - c['sent']) / 1000:6.0f}{stages}  {c.get('starts', 0):>6}")
    for label, part in (("all", complete), ("slowest 1%", complete[-max(1, len(complete) // 100):])):
        mean = lambda a, b: sum(c[b] - c[a] for _, c in part) / len(part) / 1000
        total = sum(c["decided"] - c["sent"] for _, c in part) / len(part) / 1000
        print(f"\nmean over {label} ({len(part)}): total {total:.0f} ms; "
              + ", ".join(f"{s} {mean(a, b):.0f}" for s, a, b in STAGES))


if __name__ == "__main__":
    main()
