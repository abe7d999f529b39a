-- examples/gdpr.sql: an erasure request (GDPR art. 17), end to end.
--
-- A customer stream holds personal data; a read model (customer_directory)
-- holds the customer's name and e-mail.  The customer asks to be forgotten:
--   1. es_redact_event erases the personal fields from the stored events,
--      and the read model scrubs itself when it receives $EventRedacted;
--   2. es_delete_stream removes the stream, and the read model drops the
--      row when it receives $StreamDeleted;
--   3. es_erasures shows what was removed, when, by whom and why -- without
--      the removed data.
-- The read model is an inline projection, so it changes in the same
-- transaction as the events.  Run it after CREATE EXTENSION event_sourcing
-- (the extension's schema on search_path), e.g. in psql:  \i examples/gdpr.sql
-- It works in a transaction and rolls back at the end, leaving the database
-- as it was; replace ROLLBACK by COMMIT to keep it.

BEGIN;

-- The read model: one row per customer.
CREATE TABLE customer_directory (
    customer_id text PRIMARY KEY,
    name        text,
    email       text,
    city        text,
    orders      int NOT NULL DEFAULT 0
);

CREATE FUNCTION customer_directory_apply(e es_events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    CASE e.event_type
    WHEN 'CustomerRegistered' THEN
        INSERT INTO customer_directory (customer_id, name, email, city)
        VALUES (e.stream_id, e.data->>'name', e.data->>'email', e.data->'address'->>'city');
    WHEN 'OrderPlaced' THEN
        UPDATE customer_directory SET orders = orders + 1 WHERE customer_id = e.stream_id;
    -- An event of the stream was redacted: read what is left of it, as
    -- every reader now does, and take the fields it no longer has.
    WHEN '$EventRedacted' THEN
        UPDATE customer_directory d
           SET name = CASE WHEN r.data ? 'name' THEN d.name END,
               email = CASE WHEN r.data ? 'email' THEN d.email END
          FROM es_load(e.stream_id, (e.data->>'version')::bigint, (e.data->>'version')::bigint) r
         WHERE d.customer_id = e.stream_id AND r.event_type = 'CustomerRegistered';
    -- The stream was deleted: so is the row.
    WHEN '$StreamDeleted' THEN
        DELETE FROM customer_directory WHERE customer_id = e.stream_id;
    END CASE;
END
$$;

CREATE FUNCTION customer_directory_reset() RETURNS void
LANGUAGE sql AS $$ TRUNCATE customer_directory $$;

SELECT es_define_projection('customer_directory', 'customer_directory_apply(es_events)',
                            ARRAY['CustomerRegistered', 'OrderPlaced', '$EventRedacted', '$StreamDeleted'],
                            reset => 'customer_directory_reset()');

-- Two customers with personal data.
SELECT es_append('customer-1', 0, 'CustomerRegistered',
                 '{"name": "Ada Lovelace", "email": "ada@example.org", "address": {"city": "London", "street": "12 St James Sq"}}',
                 '{"ip": "192.0.2.10"}', '0193a2c4-7e1a-7000-8000-00000000ada1');
SELECT es_append('customer-1', 1, 'OrderPlaced', '{"order": "o-100", "total": 25}');
SELECT es_append('customer-2', 0, 'CustomerRegistered',
                 '{"name": "Charles Babbage", "email": "cb@example.org", "address": {"city": "London"}}');
SELECT customer_id, name, email, city, orders FROM customer_directory ORDER BY customer_id;

-- Step 1: Ada asks for her personal data to be erased, but her order history
-- must be kept for the accountants for now.  Redact the fields (and the IP
-- address in the metadata) from the stored event.
SELECT es_redact_event(event_id, ARRAY['name', 'email', 'address.street', 'metadata.ip'],
                       'erasure request #2024-17 (art. 17)')
  FROM es_events WHERE stream_id = 'customer-1' AND event_type = 'CustomerRegistered';

-- What every reader now sees: the fields are gone, a $EventRedacted event says so.
SELECT stream_version, event_type, data, metadata FROM es_load('customer-1');
-- The read model scrubbed itself in the same transaction.
SELECT customer_id, name, email, city, orders FROM customer_directory ORDER BY customer_id;

-- Step 2: the retention period of the order history ends: delete the stream.
SELECT es_delete_stream('customer-1', reason => 'erasure request #2024-17, order history expired');
SELECT stream_version, event_type, data FROM es_load('customer-1');
SELECT customer_id, name, email, city, orders FROM customer_directory ORDER BY customer_id;

-- Nothing can be appended to the deleted stream again.
SAVEPOINT before_append;
\set ON_ERROR_STOP off
SELECT es_append('customer-1', NULL, 'OrderPlaced', '{"order": "o-101"}');
\set ON_ERROR_STOP on
ROLLBACK TO SAVEPOINT before_append;

-- Step 3: the audit trail, without the removed data.
SELECT operation, stream_id, from_version, to_version, event_count, paths, reason
  FROM es_erasures WHERE stream_id = 'customer-1' ORDER BY erasure_id;

-- A rebuild of the read model replays the log as it is now: no trace of Ada.
SELECT es_projection_rebuild('customer_directory') > 0 AS rebuilt;
SELECT customer_id, name, email, city, orders FROM customer_directory
 WHERE customer_id IN ('customer-1', 'customer-2') ORDER BY customer_id;

-- Leave the database as it was (see the top of the file).
ROLLBACK;
