"""Plain-Python view-models behind the desktop pages: no widgets here, so each is testable alone."""
