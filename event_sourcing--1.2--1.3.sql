/* event_sourcing--1.2--1.3.sql: the published safe bound of the global log */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION event_sourcing UPDATE TO '1.3'" to load this file. \quit

--
-- The log mark.  On a primary that preloads the library, the log mark
-- writer of each database in event_sourcing.worker_databases stores the safe
-- bound of the global log here whenever it moved (at most every
-- event_sourcing.log_mark_interval ms).  Hot standbys replay it, and a
-- logical replica receives it in the same subscription as es_events: their
-- readers read the log up to it.  The table starts empty (a logical replica's
-- initial copy fills it); it holds one row once the mark is published.  It
-- is not user data and is not dumped: a restored database publishes its own.
--
CREATE TABLE @extschema@.es_log_mark (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    position     bigint NOT NULL CHECK (position >= 0),
    published_at timestamptz NOT NULL
);

COMMENT ON TABLE @extschema@.es_log_mark IS
    'The safe bound of the global log, published by the primary for hot standbys and logical replicas';
COMMENT ON COLUMN @extschema@.es_log_mark.position IS
    'Every event at or below this position committed (or was rolled back) before this row was written';
COMMENT ON COLUMN @extschema@.es_log_mark.published_at IS
    'When the primary stored this position';

REVOKE ALL ON @extschema@.es_log_mark FROM PUBLIC;
