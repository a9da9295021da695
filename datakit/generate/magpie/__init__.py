"""Magpie: instructions sampled from an aligned model given only its pre-query template, then answered by it."""
