"""Stateful fakes of the billing engines (Stripe, Metronome) with fault injection,
for tests and the demo."""
