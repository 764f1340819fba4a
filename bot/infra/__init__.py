"""Plumbing with no domain: state directory, database schema, advisory locks, leader election,
redaction, escaping peer control characters, operators' programs, logging, metrics, health, exit codes,
clock. Imports only bot.config."""
