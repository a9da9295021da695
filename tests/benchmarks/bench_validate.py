"""Benchmark: datakit's column-wise validation against fastjsonschema row by row, on the same rows.

Builds N conversational preference rows (default one million; prompts of 1 to 4 user turns, some with a system
turn, assistant turns between), validates them with datakit (an in-memory Arrow table, and again from a Parquet
file) and with fastjsonschema (compiled from the same schema document, the rules JSON Schema can express), and
prints rows/s for each and the ratio. Goals on a 2-core machine: >= 1M rows/s for datakit, >= 50x fastjsonschema.

    python tests/benchmarks/bench_validate.py [--rows 1000000] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datakit.records import get_schema, validate, validate_table

WORDS = ("the a of to and in is it that for on with as this be are was by at or from an which one can have "
         "what how why when explain write list give code data model answer question short long simple best "
         "python rust table graph number first second last step because example result value error").split()
GOAL_ROWS_PER_S = 1_000_000
GOAL_RATIO = 50


def build_rows(n: int, seed: int = 0) -> pa.Table:
    """n valid conversational preference rows, built column-wise."""
    rng = np.random.default_rng(seed)
    texts = dict.fromkeys(" ".join(rng.choice(WORDS, size=int(rng.integers(3, 40)))) for _ in range(20_000))
    pool = pa.array(list(texts))
    user_turns = rng.integers(1, 5, n)
    system = rng.random(n) < 0.3
    sizes = 2 * user_turns - 1 + system
    total = int(sizes.sum())
    starts = np.cumsum(sizes) - sizes
    position = np.arange(total) - np.repeat(starts, sizes) - np.repeat(system, sizes)
    roles = np.where(position % 2 == 0, "user", "assistant").astype(object)
    roles[position < 0] = "system"

    def messages(role: pa.Array, picks: np.ndarray) -> pa.StructArray:
        return pa.StructArray.from_arrays([role, pool.take(pa.array(picks))], names=["role", "content"])

    offsets = pa.array(np.append(starts, total).astype(np.int32))
    prompt = pa.ListArray.from_arrays(offsets, messages(pa.array(roles, pa.string()), rng.integers(0, len(pool), total)))
    one_each = pa.array(np.arange(n + 1, dtype=np.int32))
    assistant = pa.array(["assistant"] * n)
    picks = rng.integers(0, len(pool), n)
    shift = rng.integers(1, len(pool), n)  # never 0, so rejected always differs from chosen
    chosen = pa.ListArray.from_arrays(one_each, messages(assistant, picks))
    rejected = pa.ListArray.from_arrays(one_each, messages(assistant, (picks + shift) % len(pool)))
    return pa.table({"prompt": prompt, "chosen": chosen, "rejected": rejected})


def fastjsonschema_validator():
    """fastjsonschema compiled from the conversational branch of datakit's own preference schema."""
    import fastjsonschema

    schema = get_schema("preference")
    document = {**schema.style("conversational").node, "$defs": schema.document["$defs"]}
    # fastjsonschema knows drafts 4 to 7; every keyword the branch uses means the same there.
    document["$schema"] = "http://json-schema.org/draft-07/schema#"
    return fastjsonschema.compile(document)


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="datakit runs; the best is reported")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()

    t0 = time.perf_counter()
    table = build_rows(args.rows)
    print(f"built {table.num_rows:,} rows ({table.nbytes / 2**20:,.0f} MiB in Arrow) in {time.perf_counter() - t0:.1f} s")

    report = validate_table(table, schema="preference")
    assert report.status == "valid" and report.rows == args.rows, [str(i) for i in report.issues]
    datakit_s = best_of(args.repeat, lambda: validate_table(table, schema="preference"))
    datakit_rate = args.rows / datakit_s
    print(f"datakit (in-memory Arrow):   {datakit_rate:>13,.0f} rows/s  ({datakit_s:.3f} s)")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.parquet"
        pq.write_table(table, path, row_group_size=65_536)
        file_s = best_of(args.repeat, lambda: validate(path, schema="preference"))
        assert validate(path, schema="preference").exit_code == 0
    print(f"datakit (from Parquet file): {args.rows / file_s:>13,.0f} rows/s  ({file_s:.3f} s, reading included)")

    rows = table.to_pylist()
    check = fastjsonschema_validator()
    start = time.perf_counter()
    for row in rows:
        check(row)
    baseline_s = time.perf_counter() - start
    baseline_rate = args.rows / baseline_s
    print(f"fastjsonschema (row by row): {baseline_rate:>13,.0f} rows/s  ({baseline_s:.3f} s)")

    ratio = datakit_rate / baseline_rate
    print(f"ratio datakit / fastjsonschema: {ratio:.1f}x")
    goals = {
        f"datakit >= {GOAL_ROWS_PER_S:,} rows/s": datakit_rate >= GOAL_ROWS_PER_S,
        f"ratio >= {GOAL_RATIO}x": ratio >= GOAL_RATIO,
    }
    for goal, met in goals.items():
        print(f"goal {goal}: {'met' if met else 'MISSED'}")
    print(json.dumps({"rows": args.rows, "datakit_rows_per_s": round(datakit_rate),
                      "datakit_file_rows_per_s": round(args.rows / file_s),
                      "fastjsonschema_rows_per_s": round(baseline_rate), "ratio": round(ratio, 1)}))
    return 1 if args.check and not all(goals.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
