"""The enrichment pipeline: canvas, stage tasks, policies, providers, rate limiting."""
