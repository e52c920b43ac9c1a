"""One module per page of the main window (Connect, Data, Privacy, Training, Insights, Reports)."""
