"""Every retry policy the workflows give their activities, in one place.

Temporal is the one retry layer (the Graph SDK's own retries are off): a 429/503/5xx becomes a
retryable ApplicationError whose `next_retry_delay` (from Retry-After) wins over the backoff.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

TENANT = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_attempts=4)
"""Evidence reads and remediation actions against the tenant."""
NOTIFY = RetryPolicy(maximum_attempts=3)
"""Approval notifications: a lost reminder must not hold the case up for long."""
POLLER = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_attempts=5)
"""Listing alerts and opening their cases: a failed pass leaves the cursor for the next one."""
TRUST = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(minutes=1))
"""Reading the approval trust from the worker's settings: no attempt limit, so a case whose worker
has a broken config waits (and approves nothing) until the config is fixed."""
