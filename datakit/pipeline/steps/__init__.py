"""Built-in generic steps: reading and writing, column edits, filtering, sampling, shuffling, limits, exact dedup."""
