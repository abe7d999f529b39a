-- bench/catchup_es_read_all.sql: one page of a catch-up through es_read_all,
-- every row to the client; the next page starts after it (positions are
-- dense, 1..N, as catchup_bench.sh checks, so the last position is :last + 1000).
SELECT * FROM es_read_all(:last, 1000);
\set last :last + 1000
