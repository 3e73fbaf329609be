"""The back-office search page: the app, its service layer, schema and static files."""
