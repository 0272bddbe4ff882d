"""Static checks of board code (the ESP8266 API check)."""
