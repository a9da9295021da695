"""Data generation methods (Magpie, ...): each a package of pure helpers plus the pipeline steps that use them."""
