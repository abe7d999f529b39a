-- bench/upcast_select_expr.sql: the upcast stream by a plain ordered SELECT that evaluates the two
-- upcasting steps' expressions written inline, each once per row (OFFSET 0 keeps the inner query,
-- so the first step is not substituted, and computed, twice); rows equal es_load('up-1')'s.
-- All rows to the client.
SELECT global_position, stream_id, stream_version, event_id, event_type,
       jsonb_build_object('value', data->'amount', 'currency', data->'currency') AS data,
       metadata, recorded_at, 3 AS schema_version
  FROM (SELECT global_position, stream_id, stream_version, event_id, event_type,
               data || '{"currency": "EUR"}' AS data, metadata, recorded_at
          FROM es_events WHERE stream_id = 'up-1' ORDER BY stream_version OFFSET 0) s;
