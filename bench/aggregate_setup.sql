-- bench/aggregate_setup.sql: evolve functions and a stream filler for
-- aggregate_bench.sh, run after CREATE EXTENSION event_sourcing and
-- examples/bank_account.sql (which defines bank_evolve).

-- Trivial evolves that return the state unchanged: what a fold costs with
-- next to no work per event, in SQL and in PL/pgSQL.
CREATE FUNCTION noop_sql_evolve(state jsonb, event es_events) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT state';

CREATE FUNCTION noop_plpgsql_evolve(state jsonb, event es_events) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS 'BEGIN RETURN state; END';

-- bench_fill(stream, n, batch): append n events to the stream with es_append,
-- 'batch' events per call: an AccountOpened first (if the stream is new),
-- then MoneyDeposited {"amount": 10}.  Returns the stream's version.
CREATE FUNCTION bench_fill(p_stream text, p_n int, p_batch int DEFAULT 1000)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    opened boolean := es_stream_version(p_stream) > 0;
    done   int := 0;
    k      int;
    v      bigint := es_stream_version(p_stream);
BEGIN
    WHILE done < p_n LOOP
        k := least(p_batch, p_n - done);
        v := es_append(p_stream, NULL,
                (SELECT jsonb_agg(CASE WHEN NOT opened AND i = 1
                        THEN '{"type": "AccountOpened", "data": {"owner": "bench", "amount": 0}}'::jsonb
                        ELSE '{"type": "MoneyDeposited", "data": {"amount": 10}}'::jsonb END
                    ORDER BY i)
                 FROM generate_series(1, k) i));
        opened := true;
        done := done + k;
    END LOOP;
    RETURN v;
END $$;

-- bank_evolve written in PL/pgSQL, the same logic (part 3 of
-- aggregate_bench.sh compares it with the SQL one, inlined or not).
CREATE FUNCTION bank_evolve_plpgsql(state jsonb, event es_events) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    CASE event.event_type
    WHEN 'AccountOpened' THEN
        RETURN jsonb_build_object('status', 'open',
                                  'owner', event.data->'owner',
                                  'balance', (event.data->>'amount')::numeric,
                                  'transactions', 1);
    WHEN 'MoneyDeposited' THEN
        RETURN state || jsonb_build_object(
            'balance', (state->>'balance')::numeric + (event.data->>'amount')::numeric,
            'transactions', (state->>'transactions')::int + 1);
    WHEN 'MoneyWithdrawn' THEN
        RETURN state || jsonb_build_object(
            'balance', (state->>'balance')::numeric - (event.data->>'amount')::numeric,
            'transactions', (state->>'transactions')::int + 1);
    WHEN 'AccountClosed' THEN
        RETURN state || '{"status": "closed"}';
    ELSE
        RETURN state;
    END CASE;
END
$$;
