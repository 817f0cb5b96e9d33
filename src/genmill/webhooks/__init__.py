"""Webhook delivery: the dispatcher that drains the outbox to client endpoints."""
