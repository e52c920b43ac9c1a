"""Qt widgets of the desktop app. Thin views: page logic lives in ``desktop_client.viewmodels``."""
