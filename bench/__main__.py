"""`python -m bench`: every benchmark, printed as a table to paste into BENCHMARKS.md."""

from __future__ import annotations

from bench import loop_overhead

if __name__ == "__main__":
    print(f"loop overhead ({loop_overhead.STEPS} steps, 1 thread, median of 5, alternating)")
    for row in loop_overhead.run():
        print(
            f"  {row['model']:18} ours {row['ours_ms_per_step']:.3f} ms/step  "
            f"bare {row['bare_ms_per_step']:.3f} ms/step  ratio {row['ratio']:.3f}"
        )
