-- bench/read_select.sql: the same 1,000 rows by plain SQL (all rows to the client).
SELECT * FROM es_events WHERE stream_id = 'load-1' ORDER BY stream_version;
