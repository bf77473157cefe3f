"""Outputs of the message bus besides the WebSocket server: Prometheus metrics and MQTT."""
