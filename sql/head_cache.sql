-- The shared cache of stream heads exists only with the library preloaded
-- (this suite runs without): there is no setting, and every append reads
-- the head from the index.  The cached path is tested by the isolation spec
-- head_cache (preloaded) and test/t/015_head_cache.pl.
SELECT count(*) AS head_cache_setting FROM pg_settings WHERE name = 'event_sourcing.head_cache_size';
SELECT es_append('hc-1', NULL, 'E', '{}');
SELECT es_append('hc-1', NULL, 'E', '{}');
BEGIN;
SELECT es_append('hc-1', NULL, 'E', '{}');
ROLLBACK;
BEGIN;
SELECT es_append('hc-1', NULL, 'E', '{}');
SAVEPOINT s;
SELECT es_append('hc-1', NULL, 'E', '{}');
ROLLBACK TO SAVEPOINT s;
SELECT es_append('hc-1', NULL, 'E', '{}');
COMMIT;
SELECT string_agg(stream_version::text, ',' ORDER BY stream_version) AS versions
  FROM es_events WHERE stream_id = 'hc-1';
