"""``meterstream demo``: the whole pipeline on one machine under a demo load.

run.py orchestrates (child processes, phases, the final reconciliation), load.py makes
the demo load, view.py keeps what the demo shows and renders it, stripe_setup.py
prepares Stripe test mode when ``STRIPE_API_KEY`` is set.
"""
