-- bench/insert_10.sql: baseline, 10 rows of one stream per INSERT ... SELECT.
\set s random(1, 10000)
INSERT INTO bench_insert (global_position, stream_id, stream_version, event_id,
                          event_type, data, metadata, recorded_at)
SELECT p, 'bench-' || :s, p, ('f' || lpad(to_hex(p), 31, '0'))::uuid,
       'Deposited', '{"amount": 10, "currency": "EUR"}', '{}', now()
FROM (SELECT nextval('bench_insert_seq') AS p FROM generate_series(1, 10)) n;
