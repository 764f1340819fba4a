"""The audit trail: its schema, hash chain and verification, its key, and its views."""
