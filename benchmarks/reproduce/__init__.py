"""Reproduce Jain & Wallace (2019), "Attention is not Explanation", on SST and AG News, and audit a fine-tuned
MiniLM per layer and head. Run ``python -m benchmarks.reproduce --help``; see ``docs/reproducing.md``."""
