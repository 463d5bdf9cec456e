"""Exchange protocols: pure frame parsers, the resilient WebSocket session and the local simulator."""
