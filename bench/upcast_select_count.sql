-- bench/upcast_select_count.sql: the upcast stream's rows as stored, by a plain ordered SELECT, server side only.
-- count(s) uses the whole row: no index-only scan, every column is formed.
SELECT count(s) FROM (SELECT * FROM es_events WHERE stream_id = 'up-1'
                      ORDER BY stream_version) s;
