"""Widgets and display helpers shared by the screens."""
