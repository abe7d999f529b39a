-- bench/read_select_count.sql: plain SQL, server side only (one row to the client).
-- count(s) uses the whole row: no index-only scan, every column is fetched.
SELECT count(s) FROM (SELECT * FROM es_events WHERE stream_id = 'load-1'
                      ORDER BY stream_version) s;
