"""Tests for datakit.io."""
