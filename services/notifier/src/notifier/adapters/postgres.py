"""The notifier's unit of work on PostgreSQL: servicekit's event log and inbox plus the
contacts, deliveries, delivery log, rate buckets and operators' reports, all on the one
connection of the transaction."""

from __future__ import annotations

from servicekit.db import Connection
from servicekit.eventstore import EventStore
from servicekit.postgres import PostgresUnitOfWork

from notifier.adapters.contacts import PostgresContacts
from notifier.adapters.deliveries import (
    PostgresDeliveries,
    PostgresDeliveryLog,
    PostgresRateBuckets,
)
from notifier.adapters.reports import PostgresDeliveryReports


class PostgresNotifierUnitOfWork(PostgresUnitOfWork):
    def __init__(self, conn: Connection, store: EventStore) -> None:
        super().__init__(conn, store)
        log = PostgresDeliveryLog(conn)
        self.contacts = PostgresContacts(conn)
        self.delivery_log = log
        self.deliveries = PostgresDeliveries(conn, log)
        self.rate_buckets = PostgresRateBuckets(conn)
        self.reports = PostgresDeliveryReports(conn)
