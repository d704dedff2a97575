"""The DLQ code shared by the Lambdas (lambdas/), the ops pages and `manage.py dlq` (api/ops/): summary and replay."""
