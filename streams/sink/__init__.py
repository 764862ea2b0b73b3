"""The Stripe sink: usage.summaries in, Stripe meter events out."""
