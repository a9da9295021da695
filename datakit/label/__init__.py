"""Labeling: judge tags, reward scores, and pairing scored responses into preference data."""
