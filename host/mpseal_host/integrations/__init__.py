"""Where readings go beyond the receiver: MQTT / Home Assistant, Prometheus, export, fleet status."""
