"""The coordinator: a headless daemon that supervises a Flower SuperLink (later issues)."""
