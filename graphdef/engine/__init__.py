"""The engine: the typed graph, the reference interpreter, compiled plans, and the Model that runs them."""
