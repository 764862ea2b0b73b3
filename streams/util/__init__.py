"""Small helpers with no home of their own, shared by the SDK, the sink and the alerts
tail; standard library only, so the SDK may import them."""
