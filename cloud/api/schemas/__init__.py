"""The HTTP API's models, by resource: separate from the tables and from the wire's messages."""

__all__ = ["admin", "common", "consents", "households", "offers", "operations", "retail"]
