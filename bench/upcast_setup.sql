-- bench/upcast_setup.sql: the read store of upcast_bench.sh, run after
-- CREATE EXTENSION event_sourcing, before any upcaster exists.
--
-- Three streams of 1,000 events each, appended in 100 interleaved batches
-- of 10: 'plain-1' of type 'Noted' (never gets upcasters), 'up-1' of type
-- 'MoneyDeposited' and 'pl-1' of type 'CashDeposited' (both stored at schema
-- 1 now; upcast_define.sql then registers their 1->2 and 2->3 steps: SQL
-- functions for MoneyDeposited, the same logic in PL/pgSQL for
-- CashDeposited).  All carry the same data, {"amount": 10}, so the stored
-- rows have the same size and only upcasting differs.
--
-- The upcaster functions are created here too (so a copy of this database
-- made as a template has them, without any upcaster registered).

-- 1 -> 2: adds a key.
CREATE FUNCTION bench_deposited_v1_to_v2(data jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE AS $$ SELECT data || '{"currency": "EUR"}' $$;
-- 2 -> 3: reshapes.
CREATE FUNCTION bench_deposited_v2_to_v3(data jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE AS $$ SELECT jsonb_build_object('value', data->'amount', 'currency', data->'currency') $$;
-- The same two steps in PL/pgSQL (for CashDeposited).
CREATE FUNCTION bench_cash_v1_to_v2(data jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN data || '{"currency": "EUR"}'; END $$;
CREATE FUNCTION bench_cash_v2_to_v3(data jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN jsonb_build_object('value', data->'amount', 'currency', data->'currency'); END $$;

DO $$
DECLARE
    noted jsonb := (SELECT jsonb_agg(jsonb_build_object('type', 'Noted', 'data', '{"amount": 10}'::jsonb))
                    FROM generate_series(1, 10));
    deposited jsonb := (SELECT jsonb_agg(jsonb_build_object('type', 'MoneyDeposited', 'data', '{"amount": 10}'::jsonb))
                        FROM generate_series(1, 10));
    cash jsonb := (SELECT jsonb_agg(jsonb_build_object('type', 'CashDeposited', 'data', '{"amount": 10}'::jsonb))
                   FROM generate_series(1, 10));
BEGIN
    FOR r IN 1..100 LOOP
        PERFORM es_append('plain-1', NULL, noted);
        PERFORM es_append('up-1', NULL, deposited);
        PERFORM es_append('pl-1', NULL, cash);
    END LOOP;
END $$;
VACUUM ANALYZE es_events;
