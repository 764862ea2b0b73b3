"""Stripe test mode for the demo: refuse live keys, check the meters, create customers.

The demo's Stripe customers are created fresh in test mode on every run (with metadata
``meterstream_demo=1``), so the demo never writes usage to an existing customer. Meters
are not created: a billing meter per configured ``stripe_event_name`` (sum) must exist,
and the demo stops before any load when one is missing.
"""

from __future__ import annotations

from collections.abc import Sequence

import stripe

from streams.errors import StripeSetupError

__all__ = ["create_demo_customers"]


async def create_demo_customers(
    api_key: str, customers: Sequence[str], event_names: Sequence[str],
    api_base: str | None = None,
) -> dict[str, str]:
    """Check the meters and create one test-mode Stripe customer per demo customer;
    return our customer id -> Stripe customer id. The key never appears in an error."""
    if not api_key.startswith(("sk_test_", "rk_test_")):
        raise StripeSetupError("STRIPE_API_KEY must be a test-mode key (sk_test_... or "
                               "rk_test_...); the demo never writes to live mode")
    client = stripe.StripeClient(
        api_key, base_addresses={"api": api_base} if api_base else None,
        http_client=stripe.AIOHTTPClient(), max_network_retries=2,
    )
    try:
        meters = await client.v1.billing.meters.list_async(params={"limit": 100})
        have = {m.event_name for m in meters.data if m.status == "active"}
        missing = [name for name in event_names if name not in have]
        if missing:
            raise StripeSetupError(
                "Stripe test mode has no active billing meter for event name(s) "
                f"{', '.join(missing)}: create sum meters with these event names "
                "(Dashboard > Billing > Meters) and run the demo again")
        ids: dict[str, str] = {}
        for customer in customers:
            created = await client.v1.customers.create_async(params={
                "name": f"meterstream demo {customer}",
                "metadata": {"meterstream_demo": "1", "meterstream_customer": customer},
            })
            ids[customer] = created.id
        return ids
    except stripe.StripeError as exc:
        message = str(exc.user_message or type(exc).__name__).replace(api_key, "**********")
        raise StripeSetupError(f"Stripe test mode: {message}") from None
