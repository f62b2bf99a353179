"""The ministry JSON API under ``/api/v1/``."""
