-- bench/aggregate_roundtrip.sql: the round-trip floor for part 1 of aggregate_bench.sh:
-- one row of the same shape as es_aggregate's, computed from constants.
SELECT 100::bigint AS version, '{"status": "open", "balance": 990, "transactions": 100}'::jsonb AS state;
