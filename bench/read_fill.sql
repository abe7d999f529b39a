-- bench/read_fill.sql: the store of read_bench.sh and read_faults.sh,
-- :events events (psql -v events=N, a multiple of 10,000) inserted directly
-- into es_events (superuser), in position order: every (events / 10,000)th
-- position goes to 'load-10000' (so that stream has 10,000 events spread
-- over the whole log), the others round-robin to 'bench-1' .. 'bench-10000';
-- versions contiguous in every stream.  Then the sequence, VACUUM ANALYZE
-- and a CHECKPOINT.
INSERT INTO es_events (global_position, stream_id, stream_version, event_id,
                       event_type, data, metadata, recorded_at)
SELECT p,
       CASE WHEN p % k1 = 0 THEN 'load-10000' ELSE 'bench-' || ((i - 1) % 10000 + 1) END,
       CASE WHEN p % k1 = 0 THEN p / k1 ELSE (i - 1) / 10000 + 1 END,
       gen_random_uuid(),
       CASE WHEN p % 5 = 0 THEN 'Withdrawn' ELSE 'Deposited' END,
       jsonb_build_object('amount', p % 1000, 'currency', 'EUR'),
       '{}',
       now() + p * interval '1 millisecond'
FROM (SELECT p, k1, p - p / k1 AS i
      FROM (SELECT :events::bigint / 10000 AS k1) k,
           generate_series(1, :events::bigint) p) g
ORDER BY p;
SELECT setval('es_events_global_position_seq', :events);
VACUUM ANALYZE es_events;
CHECKPOINT;
