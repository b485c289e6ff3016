"""Shape and indexing ops: concatenation, slicing, gathering, padding, selection."""
