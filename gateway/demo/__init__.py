"""``gateway demo``: one command that shows the whole system working.

It creates a demo folder with a dev PKI, the agency directory of Tây Ninh and a SQLite database, starts a
hub and five agency nodes as real processes over mutual TLS, plays a month of dispatches between the
province's agencies (accepted, processed, refused, recalled, tampered, signed with a revoked certificate,
left overdue, and sent on paper only), then prints one dispatch's receipts and the electronic-exchange
rate by level pair. See :mod:`gateway.demo.runner` for how the month is made realistic.
"""

from gateway.demo.runner import DemoOptions, run_demo

__all__ = ["DemoOptions", "run_demo"]
