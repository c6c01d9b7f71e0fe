"""issueflow: an issue tracker whose issues are enriched by a Celery pipeline."""
