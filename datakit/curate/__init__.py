"""Curation steps: heuristic filters, fastText classifiers, and exact, near-duplicate and semantic dedup."""
