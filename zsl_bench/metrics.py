"""Placeholder: metrics are pure functions (owned by the protocol work)."""
