-- bench/scale_select.sql: the same stream by the plain ordered SELECT, every
-- row to the client (a streaming scan of the (stream_id, stream_version) index).
SELECT * FROM es_events WHERE stream_id = :stream ORDER BY stream_version;
