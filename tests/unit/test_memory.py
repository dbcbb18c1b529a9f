"""memory.settle_gc, in a fresh interpreter: it changes the garbage collector of the process it runs in."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json
from pgactivity.memory import settle_gc
before = (gc.get_freeze_count(), gc.get_threshold())
objects = [[i] for i in range(1000)]  # alive at the call: frozen with the rest
ids = {id(o) for o in objects}
settle_gc(5000)
print(json.dumps({"before": before, "frozen": gc.get_freeze_count(), "threshold": gc.get_threshold(),
                  "tracked": sum(1 for o in gc.get_objects() if id(o) in ids)}))
"""


def test_settle_gc_freezes_what_exists_and_collects_the_young_less_often() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    probe = json.loads(out.stdout)
    assert probe["before"][0] == 0
    assert probe["frozen"] >= 1000  # at least the probe's own lists, besides the modules
    assert probe["threshold"][0] == 5000
    assert probe["threshold"][1:] == probe["before"][1][1:]  # the older generations keep CPython's defaults
    assert probe["tracked"] == 0  # frozen objects are in no generation a collection walks
