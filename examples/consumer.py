#!/usr/bin/python3
"""consumer.py: one member of an event_sourcing subscription, outside the
database (doc/consumers.md, "Example consumers").

    consumer.py SUBSCRIPTION MEMBER SINK [BATCH_SIZE]

Loop: wait for the member's events, read a batch, hand it to the sink,
acknowledge it.  Run one process per member of the consumer group; a second
process of the same member waits until the first is gone, then carries on
from its last acknowledgement.

SINK is where the events go:
  table:NAME  insert each event into table NAME of the same database, in the
              transaction that acknowledges it: exactly once.  NAME has (at
              least) the columns global_position bigint, stream_id text,
              stream_version bigint, event_id uuid, event_type text, data jsonb.
  file:PATH   append one JSON line per event to PATH, on disk before the
              acknowledgement commits: at least once (after a crash the
              unacknowledged tail of the last batch comes again).

Connection: DATABASE_URL if set, else libpq's PG* environment variables
(PGHOST, PGPORT, PGDATABASE, PGUSER, PGAPPNAME, ...).
SIGTERM, SIGINT: finish the batch in hand, close the connection, exit 0.
An error: exit 1 without acknowledging what the sink did not take; run it
under a supervisor that restarts it.  (40001 from the acknowledgement -- the
member was reset or resized meanwhile -- is not an error: it reads again.)

Needs psycopg 3 (Debian: python3-psycopg).
"""
import json
import os
import signal
import sys

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

WAIT_MS = 1000      # one wait's timeout: also the longest a shutdown waits

stopping = False


def stop(signum, frame):
    """SIGTERM/SIGINT: stop after the batch in hand (checked between batches)."""
    global stopping
    stopping = True


def table_sink(table):
    """Insert into a table, on the consumer's connection."""
    insert = sql.SQL(
        "INSERT INTO {} (global_position, stream_id, stream_version, event_id, event_type, data)"
        " VALUES (%s, %s, %s, %s, %s, %s)").format(sql.Identifier(table))

    def sink(conn, rows):
        # Inside the batch's transaction: these rows commit together with
        # the acknowledgement, or not at all.  Exactly once.
        with conn.cursor() as cur:
            cur.executemany(insert, [(*r[:5], Jsonb(r[5])) for r in rows])
    return sink


def file_sink(path):
    """Append JSON lines to a file: stands for any sink outside the database."""
    f = open(path, "a", encoding="utf-8")
    first = True

    def sink(conn, rows):
        nonlocal first
        if first:
            # The lease is ours now (we have read), so whoever wrote before
            # is gone.  A crash may have torn its last line: end it, so that
            # it stays a line of its own (its event was not acknowledged: it
            # comes again).
            first = False
            if os.fstat(f.fileno()).st_size > 0:
                with open(path, "rb") as r:
                    r.seek(-1, os.SEEK_END)
                    if r.read(1) != b"\n":
                        f.write("\n")
        f.write("".join(json.dumps({
            "global_position": r[0], "stream_id": r[1], "stream_version": r[2],
            "event_id": str(r[3]), "event_type": r[4], "data": r[5]}) + "\n" for r in rows))
        # On disk before the acknowledgement commits.  A crash between the
        # two delivers the batch again: the reader of the file must treat
        # global_position (or event_id) as an idempotency key.
        f.flush()
        os.fsync(f.fileno())
    return sink


def main(argv):
    if len(argv) not in (4, 5) or not argv[3].startswith(("table:", "file:")):
        sys.exit(__doc__)
    name, member, (kind, _, target) = argv[1], int(argv[2]), argv[3].partition(":")
    batch = int(argv[4]) if len(argv) == 5 else 100
    sink = table_sink(target) if kind == "table" else file_sink(target)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    # One dedicated connection per member, not a pool: the member's lease is
    # a session lock of this connection.  Autocommit: the waits run outside
    # a transaction (each wait must see new commits), batches in one.
    with psycopg.connect(os.environ.get("DATABASE_URL", ""), autocommit=True) as conn:
        while not stopping:
            # Wait for the member's next events.  This takes the member's
            # lease first: while another process holds it (an instance still
            # alive), it waits here, and takes over once that process's
            # connection is gone.
            if not conn.execute("SELECT es_subscription_wait(%s, %s, %s)",
                                (name, member, WAIT_MS)).fetchone()[0]:
                continue
            try:
                with conn.transaction():
                    rows = conn.execute(
                        "SELECT global_position, stream_id, stream_version, event_id, event_type, data"
                        "  FROM es_subscription_read(%s, %s, %s)", (name, batch, member)).fetchall()
                    if rows:
                        sink(conn, rows)
                        # Only once the sink has the batch: the checkpoint
                        # moves at COMMIT.  If anything above failed or the
                        # process died, nothing is acknowledged and the batch
                        # comes again.
                        conn.execute("SELECT es_subscription_ack(%s, %s, %s)",
                                     (name, rows[-1][0], member))
            except psycopg.errors.SerializationFailure:
                # 40001: the member was reset or its group resized after this
                # read, so the batch may not be the member's any more.  Rolled
                # back; read again from the member's new checkpoint.
                continue
    # Closing the connection ended the lease: another instance takes over.
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
