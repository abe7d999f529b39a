-- bench/projection_store.sql: the store of part b of projection_bench.sh,
-- after CREATE EXTENSION event_sourcing: 100,000 events, 100 in each of
-- 1,000 streams 'acct-1'..'acct-1000', appended in 10,000 batches of 10
-- (10 passes over the streams, so the streams interleave in the global log).
DO $$
DECLARE
    batch jsonb := (SELECT jsonb_agg(jsonb_build_object('type', 'Deposited',
                                                        'data', '{"amount": 10, "currency": "EUR"}'::jsonb))
                    FROM generate_series(1, 10));
BEGIN
    FOR r IN 1..10 LOOP
        FOR s IN 1..1000 LOOP
            PERFORM es_append('acct-' || s, NULL, batch);
        END LOOP;
    END LOOP;
END $$;
VACUUM ANALYZE es_events;
