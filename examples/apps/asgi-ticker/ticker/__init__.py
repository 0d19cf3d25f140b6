"""A Starlette Server-Sent Events app (see README.md)."""
