#!/usr/bin/env python3
"""Reference oracle for Sundial's cron differential test (Tests/SundialScheduleTests).

Usage: cron_oracle.py IN.json OUT.json

IN.json:  {"cases": [{"id": 0, "expr": "*/5 * * * *", "tz": "Europe/Berlin",
                      "start": 1805097600, "count": 5}, ...]}
OUT.json: {"croniter": "7.0.0", "results": [{"id": 0, "next": [unix seconds, ...]}
                                            | {"id": 0, "error": "..."}, ...]}

Each case asks croniter for the `count` next fire times strictly after `start` (Unix
seconds), evaluated in the IANA zone `tz`. Six-field expressions have a leading seconds field
(croniter's second_at_beginning=True), as in Sundial.
"""
import json
import sys
from datetime import datetime
from importlib import metadata
from zoneinfo import ZoneInfo

from croniter import croniter


def run_case(case):
    tz = ZoneInfo(case["tz"])
    start = datetime.fromtimestamp(case["start"], tz)
    expr = case["expr"]
    six = len(expr.split()) == 6
    try:
        it = croniter(expr, start, second_at_beginning=six)
        out = []
        for _ in range(case["count"]):
            out.append(int(it.get_next(datetime).timestamp()))
        return {"id": case["id"], "next": out}
    except Exception as e:  # noqa: BLE001 - any croniter rejection is an "error" answer
        return {"id": case["id"], "error": f"{type(e).__name__}: {e}"}


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        cases = json.load(f)["cases"]
    results = [run_case(c) for c in cases]
    with open(sys.argv[2], "w") as f:
        json.dump({"croniter": metadata.version("croniter"), "results": results}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
