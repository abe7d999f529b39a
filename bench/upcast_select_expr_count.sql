-- bench/upcast_select_expr_count.sql: as upcast_select_expr.sql, server side only (one row to the client).
-- count(x) uses the whole row, so that every column is formed.
SELECT count(x) FROM (
SELECT global_position, stream_id, stream_version, event_id, event_type,
       jsonb_build_object('value', data->'amount', 'currency', data->'currency') AS data,
       metadata, recorded_at, 3 AS schema_version
  FROM (SELECT global_position, stream_id, stream_version, event_id, event_type,
               data || '{"currency": "EUR"}' AS data, metadata, recorded_at
          FROM es_events WHERE stream_id = 'up-1' ORDER BY stream_version OFFSET 0) s) x;
