"""The retailer's side: the desktop app (PySide6) and the headless ``retail-node`` CLI."""
