-- bench/catchup_select.sql: the same page by a keyset-paged SELECT, every row
-- to the client; the next page starts after it (as catchup_es_read_all.sql).
SELECT * FROM es_events WHERE global_position > :last ORDER BY global_position LIMIT 1000;
\set last :last + 1000
