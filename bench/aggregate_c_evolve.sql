-- bench/aggregate_c_evolve.sql: an evolve written in C, for aggregate_bench.sh
-- (superuser only: LANGUAGE internal is untrusted).
--
-- The extension cannot be given a new C function here, so this borrows a
-- built-in one: jsonb_strip_nulls(jsonb) reads only its first argument, so
-- calling it with (state, event) is safe, and it returns a new copy of the
-- state (minus null-valued keys; the benchmark's state {"n": 0} has none).
-- The fold's own overhead, with an evolve that costs well under a microsecond.
CREATE FUNCTION c_evolve(state jsonb, event es_events) RETURNS jsonb
LANGUAGE internal IMMUTABLE STRICT PARALLEL SAFE AS 'jsonb_strip_nulls';
