"""Qt widgets of the desktop app. Thin views: each page's logic lives in ``desktop_client.viewmodels``."""
