-- bench/aggregate_fold_table.sql: the same fold with CREATE AGGREGATE over es_events directly.
SELECT fold_agg(e ORDER BY stream_version) FROM es_events e WHERE stream_id = 'big-1';
