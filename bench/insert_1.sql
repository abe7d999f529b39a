-- bench/insert_1.sql: baseline, one plain INSERT of the same row into
-- bench_insert (same columns, collations and indexes as es_events).  It cannot
-- compute stream versions, so stream_version is the (unique) position, and
-- event_id is made from the position, above every UUIDv7 ('f...'), so it grows
-- at the right edge of the event_id index as es_append's UUIDv7 ids do (ids
-- below pre-filled UUIDv7 ones would make every insert descend the index).
\set s random(1, 10000)
INSERT INTO bench_insert (global_position, stream_id, stream_version, event_id,
                          event_type, data, metadata, recorded_at)
SELECT p, 'bench-' || :s, p, ('f' || lpad(to_hex(p), 31, '0'))::uuid,
       'Deposited', '{"amount": 10, "currency": "EUR"}', '{}', now()
FROM (SELECT nextval('bench_insert_seq') AS p) n;
