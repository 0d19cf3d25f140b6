"""A plain WSGI Server-Sent Events app (see README.md)."""
