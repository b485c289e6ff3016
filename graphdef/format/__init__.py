"""The model format: YAML source with positions, the schema, functions, the loader, saved weights."""
