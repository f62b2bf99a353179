"""Onceonly as the OAuth 2.0 authorization server for ministry services."""
