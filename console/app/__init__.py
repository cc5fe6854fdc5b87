"""The segops console: a Textual app over the local cache."""

from console.app.app import SegopsApp

__all__ = ["SegopsApp"]
