"""Alert consumers: `meterstream alerts tail` reads the alerts topic."""
