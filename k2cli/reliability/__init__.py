"""Reliability parts: sequence tracking, dead-letter queue, retry, circuit breaker."""
