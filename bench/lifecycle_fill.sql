-- bench/lifecycle_fill.sql: bench/lifecycle_bench.sh's fresh store: the
-- extension dropped and re-created, the retention category (metric_src,
-- bench/lifecycle_setup.sql) imported with a 30-day policy, then VACUUM
-- ANALYZE (an old category is all-visible) and CHECKPOINT.
DROP EXTENSION event_sourcing;
CREATE EXTENSION event_sourcing;
SELECT es_import('metric_src');
SELECT es_set_retention('metric', max_age => '30 days');
VACUUM ANALYZE es_events;
CHECKPOINT;
