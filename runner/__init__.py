"""The workspace runner: fetch a user's service code, install it, serve it supervised."""

__version__ = "0.1.0"
