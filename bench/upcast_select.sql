-- bench/upcast_select.sql: the upcast stream's rows as stored (schema 1), by a plain ordered SELECT, all rows to the client.
SELECT * FROM es_events WHERE stream_id = 'up-1' ORDER BY stream_version;
