"""zsl-bench: a benchmark and ablation harness for zero-shot learning."""

__version__ = "0.1.0"
