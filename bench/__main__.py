"""`python -m bench`: every benchmark, printed as markdown to paste into BENCHMARKS.md."""

from __future__ import annotations

from bench import loop_overhead, optim_step, regularizers

if __name__ == "__main__":
    print(f"## Loop overhead ({loop_overhead.STEPS} steps, 1 thread, median of 5, alternating)\n")
    for row in loop_overhead.run():
        print(
            f"- {row['model']}: ours {row['ours_ms_per_step']:.3f} ms/step, "
            f"bare {row['bare_ms_per_step']:.3f} ms/step, ratio {row['ratio']:.3f}"
        )
    print("\n## Optimizer step (4.2M parameters, float32, 1 thread)\n")
    print(optim_step.markdown(optim_step.run()))
    print(f"\n## Regularizer overhead (quickstart MLP, {regularizers.STEPS} steps)\n")
    print(regularizers.markdown(regularizers.run()))
