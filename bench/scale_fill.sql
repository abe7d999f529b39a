-- bench/scale_fill.sql: one chunk of scale_bench.sh's pre-fill, positions
-- :lo..:hi of a store of :n events (psql -v n=... -v lo=... -v hi=... -v t0=...),
-- inserted directly into es_events (superuser; the immutability trigger only
-- refuses UPDATE, DELETE and TRUNCATE, and the inline-projection trigger
-- dispatches only what es_append stores), then copied row for row, in
-- position order, into the INSERT baseline and the PL/pgSQL store.
--
-- Streams (n a multiple of 10,000; k1 = n / 10,000, k2 = n / 100):
--   position p with p % k1 = 0         -> 'load-10000', version p / k1
--   position p with (p + 1) % k2 = 0   -> 'load-100',   version (p + 1) / k2
--   every other position, numbered i = 1, 2, ... in order, round-robin over
--   'bench-1' .. 'bench-10000' (the streams the append scripts write):
--   stream 'bench-' || ((i - 1) % 10000 + 1), version (i - 1) / 10000 + 1.
-- So versions are contiguous from 1 in every stream, the two load streams
-- are spread evenly over the whole log, and every heap page holds events of
-- many streams.  recorded_at: :'t0' + p milliseconds (never decreasing);
-- event_id: a UUIDv7 of that millisecond (random tail), time-ordered like
-- es_append's; event_type 'Deposited' (every fifth 'Withdrawn'); data
-- {"amount": p % 1000, "currency": "EUR"}; metadata {}.
INSERT INTO es_events (global_position, stream_id, stream_version, event_id,
                       event_type, data, metadata, recorded_at)
SELECT p,
       CASE WHEN p % k1 = 0 THEN 'load-10000'
            WHEN (p + 1) % k2 = 0 THEN 'load-100'
            ELSE 'bench-' || ((i - 1) % 10000 + 1) END,
       CASE WHEN p % k1 = 0 THEN p / k1
            WHEN (p + 1) % k2 = 0 THEN (p + 1) / k2
            ELSE (i - 1) / 10000 + 1 END,
       (lpad(to_hex((extract(epoch FROM ts) * 1000)::bigint), 12, '0') || '7'
        || substr(replace(gen_random_uuid()::text, '-', ''), 14))::uuid,
       CASE WHEN p % 5 = 0 THEN 'Withdrawn' ELSE 'Deposited' END,
       jsonb_build_object('amount', p % 1000, 'currency', 'EUR'),
       '{}',
       ts
FROM (SELECT p, k1, k2, p - p / k1 - (p + 1) / k2 AS i,
             :'t0'::timestamptz + p * interval '1 millisecond' AS ts
      FROM (SELECT :n::bigint / 10000 AS k1, :n::bigint / 100 AS k2) k,
           generate_series(:lo::bigint, :hi::bigint) p) g
ORDER BY p;

INSERT INTO bench_insert SELECT * FROM es_events
WHERE global_position BETWEEN :lo AND :hi ORDER BY global_position;
INSERT INTO pl_events SELECT * FROM es_events
WHERE global_position BETWEEN :lo AND :hi ORDER BY global_position;
